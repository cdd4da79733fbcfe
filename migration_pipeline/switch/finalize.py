"""The end of the soak period, and back: the change log's job is done, or resumed.

In:  a connection to the target and the catalog, once the app writes to PostgreSQL (phase ``switched``).
Out: :func:`finalize` (the proof is green) records each table's current content as its final proof
     baseline (``migration_audit.proof_baselines``: rows and checksum computed from PostgreSQL, with why
     and when), removes the change-log triggers, empties the log and declares ``finalized``: the app's
     writes then cost nothing, and the checks prove structure, integrity, conformance and the app's
     queries. :func:`resume` puts the log back: it records the content as the baseline the checks then
     follow exactly, installs the triggers and declares ``switched`` again.
     Both hold a SHARE ROW EXCLUSIVE lock on the app's tables while they work (the app's writes wait
     for seconds, its reads do not), so the baseline is exactly the content the log starts from.
Fails: :class:`~migration_pipeline.move.phase.PhaseError` from the wrong phase, or when the proof is not
     green (finalize); psycopg errors propagate. Either step is one transaction: all or nothing.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from ..catalog import Catalog
from ..move import audit, changes, checksums, phase
from ..prove import proof

CONTENT_CHECKS = {"rows_conserved", "content_parity"}


def _lock(conn: psycopg.Connection, catalog: Catalog) -> None:
    conn.execute("SET LOCAL lock_timeout = '60s'")
    for name in catalog.names:  # parents first, the order the app's own transactions take them in
        conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(sql.Identifier(name)))


def _record_baselines(conn: psycopg.Connection, catalog: Catalog, run_id: str, why: str) -> dict[str, str]:
    """Each table's content now as its proof baseline, over the columns its load's checksum covered."""
    recorded = {}
    for name in catalog.names:
        base = audit.proof_baseline(conn, name)
        if not base or not base.get("checksum"):
            raise phase.PhaseError(f"{name} was never loaded: there is no proof to carry on")
        columns = checksums.Checksum.parse(base["checksum"]).columns
        now = checksums.checksum(conn, sql.Identifier(name), catalog.table(name), columns)
        conn.execute(
            "INSERT INTO migration_audit.proof_baselines (run_id, table_name, rows, checksum, why)"
            " VALUES (%s, %s, %s, %s, %s)",
            (run_id, name, now.rows, str(now), why),
        )
        recorded[name] = str(now)
    return recorded


def finalize(
    conn: psycopg.Connection, catalog: Catalog, *, run_id: str, by: str | None = None, note: str = ""
) -> dict[str, str]:
    """End the soak period; returns each table's final checksum."""
    now = phase.current(conn)
    if now.name != phase.SWITCHED:
        raise phase.PhaseError(f"finalize follows the switch; the database is {now.describe()}")
    failing = [
        f"{name}.{o.name}: {'; '.join(o.problems)}"
        for name in catalog.names
        for o in proof.run(conn, catalog, name, None, CONTENT_CHECKS)
        if not o.passed
    ]
    if failing:
        raise phase.PhaseError(
            "refusing to finalize while the proof fails (finalizing would make the failure the new baseline): "
            + " | ".join(failing[:5])
        )
    with conn.transaction():
        _lock(conn, catalog)
        why = "finalize" + (f": {note}" if note else "")
        recorded = _record_baselines(conn, catalog, run_id, why)
        for name in catalog.names:
            changes.remove(conn, name)
        conn.execute("DELETE FROM migration_audit.row_changes")
        phase.declare(conn, phase.FINALIZED, by=by, run_id=run_id, note=note or "soak period ended")
    return recorded


def resume(
    conn: psycopg.Connection, catalog: Catalog, *, run_id: str, by: str | None = None, note: str = ""
) -> dict[str, str]:
    """Put the change log back after finalize; returns each table's new baseline checksum."""
    now = phase.current(conn)
    if now.name != phase.FINALIZED:
        raise phase.PhaseError(
            f"the change log is only resumed after finalize; the database is {now.describe()}"
        )
    with conn.transaction():
        _lock(conn, catalog)
        recorded = _record_baselines(
            conn, catalog, run_id, "change log resumed" + (f": {note}" if note else "")
        )
        for name in catalog.names:
            spec = catalog.table(name)
            baseline = checksums.Checksum.parse(recorded[name])
            changes.install(conn, spec, baseline.columns, baseline.version)
        conn.execute("DELETE FROM migration_audit.row_changes")
        phase.declare(
            conn,
            phase.SWITCHED,
            by=by,
            run_id=run_id,
            note=note or "change log resumed",
            from_phases=frozenset({phase.FINALIZED}),
        )
    return recorded
