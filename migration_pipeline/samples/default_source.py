"""The default source: with no SQLite file at SQLITE_PATH, a generated sample there, for the embedded server only.

In:  the :class:`~migration_pipeline.connect.settings.Settings` of a run.
Out: :func:`ensure_source` leaves an existing file alone; a missing one is generated (``SAMPLE_SIZE``) when
     the target is the embedded PostgreSQL, so ``make run`` works on a fresh machine.
Fails: :class:`~migration_pipeline.move.source_check.SourceError` for a missing file with a configured
     server: a typo in SQLITE_PATH must never replace real tables with sample data.
"""

from __future__ import annotations

from collections.abc import Callable

from ..connect.settings import Settings
from ..move.source_check import SourceError
from .sample_data import generate

SAMPLE_SIZE = {"users": 1_000, "tweets": 20_000}


def ensure_source(settings: Settings, log: Callable[[str], None] = print) -> bool:
    """Make sure ``settings.sqlite_path`` exists; True when a sample was generated there (see module doc)."""
    if settings.sqlite_path.exists():
        return False
    if not settings.embedded:
        raise SourceError(
            f"SQLITE_PATH {settings.sqlite_path} does not exist. A sample database is only generated for "
            "the embedded PostgreSQL, never for a configured server."
        )
    log(f"SQLITE_PATH {settings.sqlite_path} does not exist: generating a sample database")
    generate(settings.sqlite_path, **SAMPLE_SIZE)
    return True
