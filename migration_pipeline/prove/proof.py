"""The proof of one table: the registry's checks of every table (checks.py), run on one of them.

In:  a connection to the target, the catalog, a table name and (for the checks that compare against
     the source) the snapshot the table was loaded from.
Out: :data:`CHECKS` (the checks of every table), :func:`groups` (those that apply to a table, by step) and
     :func:`run` -> one :class:`~migration_pipeline.prove.outcome.Outcome` per check, each carrying the
     numbers it compared so that a failure explains itself. Knows nothing of Dagster.
Fails: psycopg errors propagate; a check that cannot be evaluated (no load recorded, no snapshot)
     fails with that explanation rather than passing.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from ..catalog import Catalog
from . import checks
from .checks import Check
from .outcome import Outcome

CHECKS: tuple[Check, ...] = tuple(c for c in checks.CHECKS if c.table is None)


def groups(catalog: Catalog, table: str) -> dict[str, tuple[Check, ...]]:
    """The checks that apply to ``table`` by step (no JSON step for a table without jsonb columns)."""
    found: dict[str, tuple[Check, ...]] = {}
    for check in CHECKS:
        if check.applies_to(catalog.table(table)):
            found[check.step] = (*found.get(check.step, ()), check)
    return found


def run(
    conn: psycopg.Connection,
    catalog: Catalog,
    table: str,
    snapshot_path: Path | None,
    names: set[str] | None = None,
    with_app_checks: bool = False,
) -> list[Outcome]:
    """Run the checks (all that apply, or those in ``names``) of ``table``; ``with_app_checks`` adds the
    checks that belong to it alone (the app's queries and refusals), as the report lists them."""
    pool = checks.CHECKS if with_app_checks else CHECKS
    applicable = [c for c in pool if c.applies_to(catalog.table(table))]
    selected = [(table, c) for c in applicable if names is None or c.name in names]
    return checks.run(conn, catalog, snapshot_path, selected)
