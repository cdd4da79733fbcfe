"""Behaviour parity (the seed's phase 4): the registry's checks that belong to one table (checks.py),
the app's own queries (app_queries.py) and the refusals (probes.py), run together.

In:  a connection to the target, the catalog and the snapshot the tables were loaded from.
Out: :data:`CHECKS` and :func:`run` -> (check, :class:`~migration_pipeline.prove.outcome.Outcome`) per
     query and probe, all evaluated with the snapshot open once; without a snapshot each fails, saying so.
Fails: psycopg errors propagate; nothing is left written (every probe rolls back).
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from ..catalog import Catalog
from . import checks
from .checks import Check
from .outcome import Outcome

CHECKS: tuple[Check, ...] = tuple(c for c in checks.CHECKS if c.table is not None)


def run(
    conn: psycopg.Connection, catalog: Catalog, snapshot_path: Path | None, names: set[str] | None = None
) -> list[tuple[Check, Outcome]]:
    """Run the behaviour checks (all, or those in ``names``)."""
    selected = [c for c in CHECKS if names is None or c.name in names]
    outcomes = checks.run(conn, catalog, snapshot_path, [(c.table, c) for c in selected])
    return list(zip(selected, outcomes, strict=True))
