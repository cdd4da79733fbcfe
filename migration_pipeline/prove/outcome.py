"""What a check is given and what it gives back, shared by every check family (checks.py registers them).

In:  nothing: two small types.
Out: :class:`Subject` (the target connection, the catalog, the table the check is about and the source
     snapshot, open when the check reads it) and :class:`Outcome` (passed or not, the numbers compared,
     the problems found).
Fails: never.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from ..catalog import Catalog
from ..move.source import Snapshot


@dataclass(frozen=True)
class Outcome:
    name: str
    passed: bool
    metadata: dict = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    @property
    def description(self) -> str | None:
        return "; ".join(self.problems) or None


@dataclass(frozen=True)
class Subject:
    """What one check is evaluated on."""

    conn: psycopg.Connection
    catalog: Catalog
    table: str  # the table the check is about
    snapshot_path: Path | None  # the source snapshot the tables were loaded from, if any
    snapshot: Snapshot | None = None  # that snapshot, open, for a check that reads it (Check.needs_snapshot)
