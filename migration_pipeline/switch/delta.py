"""Delta sync: bring the target up to date with what the app changed in SQLite since the last load.

In:  the baseline snapshot (the file every table was last loaded or synced from: its origin identity
     equals each table's latest ``table_loads.snapshot_sha256``), the app's live SQLite file (never
     written), and a target connection.
Out: :func:`sync` refuses what a delta cannot do exactly, writes the change set (changeset.py), applies it
     to PostgreSQL in ONE transaction, table by table in foreign-key order (apply.py: the load's
     converters, quarantine and finish; 'delta' rows in ``table_loads``, the checksum carried forward
     exactly), then applies it to the baseline, which then equals the source as synced, so the checks
     compare against it. A :class:`SyncResult` has the counts and the time of each phase.
Fails: :class:`DeltaError` before anything changed when a delta cannot be exact: the baseline is not what
     the tables were last loaded from, or was taken from another file than ``source`` (a wrong source), the
     app wrote to PostgreSQL since (the change log is not empty), a table appeared, disappeared or changed
     columns. Any error while applying rolls the whole sync back.
     A sync interrupted after its commit is completed by the next one (:func:`recover`); one interrupted
     before it leaves PostgreSQL and the baseline as they were.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

from ..catalog import Catalog
from ..connect.target import apply_schema
from ..move import audit, changes, checksums, corrections, phase
from ..move.source import Snapshot, snapshot_lock
from ..move.source_copy import read_consistently
from . import apply, changeset
from .apply import MODE, TableDelta
from .changeset import DeltaError, NewState, changeset_path


@dataclass
class SyncResult:
    run_id: str
    identity: str  # sha256 of the change set: table_loads.snapshot_sha256 of this run
    tables: dict[str, TableDelta] = field(default_factory=dict)
    diff_seconds: float = 0.0
    apply_seconds: float = 0.0
    baseline_seconds: float = 0.0

    @property
    def changed_rows(self) -> int:
        return sum(t.added + t.removed for t in self.tables.values())

    @property
    def seconds(self) -> float:
        return self.diff_seconds + self.apply_seconds + self.baseline_seconds


def refuse_if_written(conn: psycopg.Connection) -> None:
    """A sync (or load) from SQLite would overwrite what was written to PostgreSQL since the last load:
    refuse once the app writes there, or while the change log holds anything, saying what (the same
    explanation the checks give)."""
    now = phase.current(conn)
    if now.name != phase.MIGRATED:
        raise DeltaError(
            f"the database is {now.describe()}: syncing from SQLite now would overwrite the app's writes"
        )
    lines = [
        line
        for table in changes.size(conn)
        for line in changes.explain(table, changes.unexplained(conn, table), now)
    ]
    if lines:
        raise DeltaError(
            "PostgreSQL has been written to since the last load, and a sync from SQLite would overwrite it: "
            + "; ".join(lines)
        )


def _check_preconditions(conn, catalog: Catalog, identity: str) -> dict[str, dict]:
    loads = audit.latest_loads(conn)
    missing = [t for t in catalog.names if t not in loads]
    if missing:
        raise DeltaError(f"never loaded: {', '.join(missing)}; run a full migration first")
    stale = [t for t in catalog.names if loads[t]["snapshot_sha256"] != identity]
    if stale:
        raise DeltaError(
            f"the baseline snapshot is not what {', '.join(stale)} were last loaded from (another snapshot "
            "was taken since, or a table was loaded from elsewhere): run a full migration"
        )
    earlier = {
        t: loads[t]["checksum"].split(";", 1)[0]
        for t in catalog.names
        if loads[t]["checksum"] and not loads[t]["checksum"].startswith(checksums.VERSION + ";")
    }
    if earlier:
        raise DeltaError(
            f"the last load of {', '.join(earlier)} recorded a {', '.join(sorted(set(earlier.values())))} "
            "checksum (an earlier version of this tool), which a sync cannot carry forward: run a full migration"
        )
    untracked = conn.execute(
        sql.SQL(
            "SELECT DISTINCT r.table_name FROM migration_audit.rejected_rows r JOIN ({}) l"
            " USING (table_name, run_id) WHERE r.source_rowid IS NULL"
        ).format(audit.LATEST_LOADS)
    ).fetchall()
    if untracked:
        raise DeltaError(
            f"the last load of {', '.join(r[0] for r in untracked)} predates rowid tracking of quarantined "
            "rows: run a full migration"
        )
    refuse_if_written(conn)
    return loads


def recover(conn: psycopg.Connection, baseline: Path) -> str | None:
    """Finish or discard a sync interrupted between its change set and the baseline's update; returns
    what was done ('completed <run>' / 'discarded <run>') or None."""
    change_set = changeset_path(baseline)
    if not change_set.exists():
        return None
    try:
        run_id = changeset.read_meta(change_set).get("run_id")
    except sqlite3.DatabaseError:
        run_id = None  # written only partly: the sync never reached PostgreSQL
    if run_id is not None and audit.run_recorded(conn, run_id, MODE):
        changeset.advance_baseline(baseline, change_set)
        return f"completed {run_id}"
    change_set.unlink()
    return f"discarded {run_id}"


def sync(conn: psycopg.Connection, catalog: Catalog, source: Path, baseline: Path, run_id: str) -> SyncResult:
    """Bring every table up to date with ``source`` since ``baseline`` (see module doc)."""
    source = Path(source)
    if not source.is_file():
        raise DeltaError(f"SQLite source {source} does not exist or is not a file")
    if not baseline.is_file():
        raise DeltaError(f"no baseline snapshot at {baseline}: run a full migration first")
    apply_schema(conn, catalog)
    with snapshot_lock(baseline, exclusive=True):  # waits for loads and checks reading it
        return _sync_locked(conn, catalog, source, baseline, run_id)


def _sync_locked(conn, catalog: Catalog, source: Path, baseline: Path, run_id: str) -> SyncResult:
    recover(conn, baseline)
    with Snapshot(baseline, locked=False) as snap:  # this process holds the lock exclusively
        taken = snap.origin()
    identity, taken_from = taken["snapshot_sha256"], taken["source_path"]
    if taken_from and Path(taken_from) != source.resolve():  # a wrong source: the diff would be of two files
        raise DeltaError(
            f"the tables were loaded from {taken_from}, not from {source}: a sync applies what changed in one "
            "file; check SQLITE_PATH, or run a full migration from this file (whose shrink guard checks it)"
        )
    loads = _check_preconditions(conn, catalog, identity)
    change_set = changeset_path(baseline)
    started = time.perf_counter()
    taken_at = datetime.now(UTC)
    corrected = corrections.in_force(conn)  # the operator's corrections last until the app changes the row
    tables = read_consistently(
        source, lambda uri: changeset.diff(baseline, uri, change_set, catalog, corrected)
    )
    result = SyncResult(run_id, changeset.write_meta(change_set, run_id, source, taken_at))
    result.diff_seconds = time.perf_counter() - started
    started = time.perf_counter()
    state = NewState(baseline, change_set, tables)
    origin = {"source_path": str(source.resolve()), "snapshot_sha256": result.identity, "taken_at": taken_at}
    try:
        with conn.transaction():
            changes.suppress_for_load(conn)
            # the sync touches few rows of big tables: key lookups, not scans (the data is cached)
            conn.execute("SET LOCAL random_page_cost = 1.1")
            for spec in catalog.tables:  # writers wait; readers go on
                conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(spec.name)))
            pending = {"keys": {}, "columns": {s.name: tables.get(s.name, ()) for s in catalog.tables}}
            removed, hashes = Counter(), Counter()
            for spec in catalog.tables:
                result.tables[spec.name] = apply.apply_table(
                    conn, catalog, spec, state, run_id, loads[spec.name], pending, removed, hashes, origin
                )
    except BaseException:
        state.close()
        change_set.unlink(missing_ok=True)
        raise
    state.close()
    result.apply_seconds = time.perf_counter() - started
    started = time.perf_counter()
    changeset.advance_baseline(baseline, change_set)
    result.baseline_seconds = time.perf_counter() - started
    return result
