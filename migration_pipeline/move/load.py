"""Load one table: snapshot rows -> converters -> COPY -> constraint quarantine -> replace, in one transaction.

In:  an open psycopg connection to the target, a source :class:`~migration_pipeline.move.source.Snapshot`,
     the table's :class:`~migration_pipeline.catalog.TableSpec` and a run id.
Out: a :class:`LoadResult`. On return the table holds exactly the source rows that could be loaded, every
     other source row is in ``migration_audit.rejected_rows`` with its reason and original values, the
     ``SERIAL`` sequences are past the highest id, statistics are fresh and a ``table_loads`` row records
     the numbers. ``source_rows == loaded_rows + rejected_rows`` is checked before commit.
Fails: :class:`LoadError` for a source that cannot be mapped onto the schema (extra columns, a missing
     NOT NULL column) or a broken conservation invariant; ``SourceError`` for a source lacking a table
     that is not ``optional_in_source``; :class:`~migration_pipeline.move.guard.ShrinkRefused` for a load that
     would remove (itself, or through foreign-key cascades) more rows than the shrink policy allows;
     ``TargetError`` for a role lacking privileges; psycopg errors when the server fails. Either way the
     transaction rolls back and the previous content of the table is untouched.
     :class:`~migration_pipeline.move.phase.PhaseError` once the app writes to PostgreSQL (phase.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from ..catalog import Catalog, TableSpec
from ..connect.target import apply_schema, privileges
from . import audit, changes, checksums, guard, phase, quarantine
from .code_version import code_version
from .source import Snapshot
from .stage import LoadError, ProgressCallback, plan_columns, source_key, stage_rows


@dataclass
class LoadResult:
    table: str
    run_id: str
    source_present: bool
    source_rows: int = 0
    loaded_rows: int = 0
    rejected_rows: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    defaulted_columns: tuple[str, ...] = ()  # target columns absent from the source: filled by defaults
    cascaded_deletes: dict[str, int] = field(default_factory=dict)
    checksum: str | None = (
        None  # checksums.Checksum of the loaded rows, computed before they entered the table
    )
    started_at: datetime | None = None
    finished_at: datetime | None = None
    origin: dict = field(default_factory=dict)  # the snapshot's provenance (Snapshot.origin())
    removed_rows: int | None = None  # rows of the table before a full load that it removed (their key left)
    shrink_confirmed: dict | None = None  # a shrink beyond the guard's limit the operator confirmed

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def rows_per_second(self) -> float:
        return self.source_rows / self.seconds if self.seconds > 0 else 0.0


def load_table(
    conn: psycopg.Connection,
    snapshot: Snapshot,
    catalog: Catalog,
    table: str,
    run_id: str,
    progress: ProgressCallback | None = None,
    policy: guard.ShrinkPolicy | None = None,
) -> LoadResult:
    """Replace ``table``'s content with the snapshot's, quarantining what cannot load. See module doc.
    ``policy``: how much the load may remove (default: the settings' ``MAX_SHRINK_SHARE``/``ALLOW_SHRINK``)."""
    spec = catalog.table(table)
    policy = guard.ShrinkPolicy.of() if policy is None else policy
    result = LoadResult(table=table, run_id=run_id, source_present=snapshot.has_table(table))
    result.started_at = datetime.now(UTC)
    result.origin = snapshot.origin()
    source = result.origin["source_path"] or str(snapshot.path)
    if not result.source_present and not spec.optional_in_source:
        guard.require_tables(snapshot.table_names(), catalog, source)
    columns, defaulted = plan_columns(snapshot, spec) if result.source_present else ((), ())
    result.defaulted_columns = defaulted
    with privileges(conn):
        apply_schema(conn, catalog)
        phase.require_migrated(conn, f"load {table}")
        _load(conn, snapshot, catalog, spec, columns, result, progress, policy, source)
    return result


def _load(conn, snapshot, catalog, spec, columns, result: LoadResult, progress, policy, source: str) -> None:
    table, run_id = spec.name, result.run_id
    with conn.transaction(), quarantine.Spool(columns) as spool:
        # One load of a table at a time; readers are not blocked until the content is replaced.
        conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(table)))
        before = _count(conn, table)
        changes.suppress_for_load(conn)  # cascades into child tables are not app changes either
        changes.remove(conn, table)
        stage = quarantine.create_stage(conn, spec, columns)
        if result.source_present:
            batches = lambda: snapshot.stream(spec.name, columns)  # noqa: E731 (read again on a redo)
            result.source_rows = stage_rows(conn, batches, spec, columns, stage, spool, progress)
        quarantine.constraint_rejections(
            conn, catalog, spec, columns, stage, spool, snapshot, lambda row: source_key(spec, columns, row)
        )
        result.checksum = str(checksums.checksum(conn, stage, columns))  # the loaded source rows, converted
        result.removed_rows = guard.keys_gone(conn, spec, columns, stage) if before else 0
        result.loaded_rows, result.cascaded_deletes = quarantine.replace_content(
            conn, catalog, spec, columns, stage
        )
        shrinks = [guard.Shrink(table, before, result.removed_rows)] + [
            guard.Shrink(child, _count(conn, child) + n, n, via=table)
            for child, n in result.cascaded_deletes.items()
        ]
        result.shrink_confirmed = policy.judge(f"load {table}", shrinks, source)  # before anything commits
        in_target = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
        if in_target[0] != result.loaded_rows:
            raise LoadError(
                f"{table}: {result.loaded_rows} rows loaded but {in_target[0]} in the table; rolling back"
            )
        changes.reset(conn, table)  # this load is the new baseline for the app's changes
        changes.install(conn, spec, columns)
        result.rejected_rows = audit.write_rejections(conn, run_id, table, spool.drain())
        result.rejected_by_reason = dict(Counter(spool.kinds).most_common())
        _finish(conn, spec, run_id)
        result.finished_at = datetime.now(UTC)
        if result.source_rows != result.loaded_rows + result.rejected_rows:
            raise LoadError(
                f"{table}: {result.source_rows} source rows but {result.loaded_rows} loaded + "
                f"{result.rejected_rows} quarantined; rolling back"
            )
        audit.record_table_load(conn, result, result.origin, code_version())


def _count(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]


def _finish(conn: psycopg.Connection, spec: TableSpec, run_id: str) -> None:
    """Sequences past the highest id, then fresh planner statistics."""
    set_sequences(conn, spec, run_id)
    conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(spec.name)))


def set_sequences(conn: psycopg.Connection, spec: TableSpec, run_id: str) -> None:
    """Each SERIAL column's sequence hands out ids past the highest in the table and among the rows
    ``run_id`` quarantined: a new row of the app never takes the id of a quarantined one, which a
    rollback or a fixed re-load would bring back. Ids below 1 (a sequence starts at 1) or beyond the
    integer range (no row can hold them) leave the sequence where it would be without them."""
    table = sql.Identifier(spec.name)
    for column in spec.serial_columns:
        col = sql.Identifier(column)
        conn.execute(
            sql.SQL(
                "WITH seq AS (SELECT seqrelid, seqmax FROM pg_sequence"
                "             WHERE seqrelid = pg_get_serial_sequence(%(table)s, %(col)s)::regclass),"
                " ids AS (SELECT max({c})::bigint AS id FROM {t} UNION ALL"
                " SELECT max((raw_row->>%(col)s)::bigint) FROM migration_audit.rejected_rows"
                " WHERE run_id = %(run)s AND table_name = %(table)s AND raw_row->>%(col)s ~ '^[0-9]{{1,18}}$'"
                # a quarantined id the sequence can never reach (beyond its type) cannot be reused
                " AND (raw_row->>%(col)s)::bigint <= (SELECT seqmax FROM seq))"
                " SELECT setval((SELECT seqrelid FROM seq), greatest(max(id), 1), coalesce(max(id) >= 1, false))"
                " FROM ids"
            ).format(c=col, t=table),
            {"table": spec.name, "col": column, "run": run_id},
        )


def load_all(
    conn: psycopg.Connection,
    snapshot: Snapshot,
    catalog: Catalog,
    run_id: str,
    policy: guard.ShrinkPolicy | None = None,
) -> dict[str, LoadResult]:
    """Load every table in foreign-key order (what the ``migrate`` job does, without Dagster), once
    :func:`~migration_pipeline.move.guard.preflight` found nothing wrong with the source."""
    policy = guard.ShrinkPolicy.of() if policy is None else policy
    guard.preflight(conn, snapshot, catalog, policy, snapshot.origin()["source_path"] or str(snapshot.path))
    return {name: load_table(conn, snapshot, catalog, name, run_id, policy=policy) for name in catalog.names}
