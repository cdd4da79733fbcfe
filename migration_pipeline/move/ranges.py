"""A big table's load fanned out: its source cut into rowid ranges, each staged by its own step, then one publish.

In:  a connection to the target, the snapshot (the same immutable file wherever a step runs), the table
     (one nothing references: its rows go into its shadow, shadow.py) and a load id that every step of
     one load shares (the Dagster run's root id, so a re-execution carries on the same load).
Out: :func:`prepare` -> the :class:`Range` list, after creating the table's shadow, which now outlives
     transactions, beside it the tables of rejected rows and landed ranges, and a claim naming the load
     (``migration_stage.loads``); :func:`land` converts and COPYs one range into the shadow and records its
     rejected rows and itself, in one transaction: a range lands whole or not at all, and a range that
     landed is not staged again (so re-running a failed load redoes only the ranges that did not land);
     :func:`publish` builds the table's indexes on the shadow (its own transaction: the locks other loads
     wait for are not held meanwhile), checks that every range landed, then does what a single-stream load does once its rows
     are staged (load.py: quarantine, checksum, keys, indexes, the swap, the audit records), in one
     transaction. Readers keep the old content until then; a failure anywhere leaves the old content, and
     the shadow and its companions for a re-run to carry on, or for the next load to drop.
Fails: :class:`Superseded` when another load has claimed the table since this one was prepared;
     :class:`~migration_pipeline.move.stage.LoadError` when ranges are missing at publish; the errors of
     load.py otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import psycopg
from psycopg import sql

from ..catalog import Catalog
from ..connect.target import apply_schema, privileges
from . import changes, guard, phase, shadow
from .audit import Rejection
from .finish import LoadResult
from .load import begin, load_table, publish_stage
from .source import Snapshot
from .stage import LoadError, ProgressCallback, Spool, create_rejects, plan_columns, stage_rows


class Superseded(RuntimeError):
    """Another load of the table took its shadow over; this one's steps cannot go on."""


@dataclass(frozen=True)
class Range:
    index: int
    first: int  # rowid, included
    last: int  # rowid, included

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Landed:
    index: int
    source_rows: int
    rejected_rows: int
    run_id: str  # the run whose step landed it
    already: bool = False  # it had landed before this step (a re-run)


def plan(snapshot: Snapshot, table: str, rows_per_range: int) -> list[Range]:
    """``table``'s rowids cut into ranges of ``rows_per_range`` rows (the last one may be shorter)."""
    if rows_per_range < 1:
        raise ValueError(f"rows per range must be at least 1, got {rows_per_range}")
    return [Range(i, first, last) for i, (first, last) in enumerate(snapshot.ranges(table, rows_per_range))]


def prepare(
    conn: psycopg.Connection,
    snapshot: Snapshot,
    catalog: Catalog,
    table: str,
    load_id: str,
    rows_per_range: int,
) -> list[Range]:
    """Plan the ranges and make the shadow they land in, claimed by ``load_id`` (committed)."""
    spec, _, result, _ = begin(snapshot, catalog, table, load_id)  # a source that cannot load fails here
    ranges = plan(snapshot, table, rows_per_range) if result.source_present else []
    with privileges(conn):
        apply_schema(conn, catalog)
        phase.require_migrated(conn, f"load {table}")
        if catalog.children(table):
            raise LoadError(
                f"{table} is referenced by foreign keys: it is loaded in one stream, not fanned out"
            )
        with conn.transaction():
            shadow.Shadow.create(conn, spec)
            rejects, landed = shadow.companions(table)
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (table_name text PRIMARY KEY, load_id text NOT NULL,"
                    " ranges integer NOT NULL, prepared_at timestamptz NOT NULL DEFAULT now())"
                ).format(shadow.CLAIMS)
            )
            conn.execute(
                sql.SQL("INSERT INTO {} (table_name, load_id, ranges) VALUES (%s, %s, %s)").format(
                    shadow.CLAIMS
                ),
                (table, load_id, len(ranges)),
            )
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (_rowid bigint, source_key text, column_name text, reason text, kind text,"
                    " raw_row text)"
                ).format(rejects)
            )
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (index integer PRIMARY KEY, first_rowid bigint, last_rowid bigint,"
                    " source_rows bigint NOT NULL, rejected_rows bigint NOT NULL, run_id text NOT NULL,"
                    " landed_at timestamptz NOT NULL DEFAULT now())"
                ).format(landed)
            )
    return ranges


def _claimed(conn: psycopg.Connection, table: str, load_id: str, lock: str) -> tuple:
    """(ranges, prepared_at) of ``load_id``'s claim on ``table``'s shadow (locked ``lock``); Superseded
    when the claim is gone or someone else's."""
    exists = conn.execute("SELECT to_regclass(%s)", (shadow.CLAIMS.as_string(conn),)).fetchone()[0]
    row = (
        conn.execute(
            sql.SQL("SELECT load_id, ranges, prepared_at FROM {} WHERE table_name = %s FOR {}").format(
                shadow.CLAIMS, sql.SQL(lock)
            ),
            (table,),
        ).fetchone()
        if exists
        else None
    )
    if row is None or row[0] != load_id:
        raise Superseded(
            f"{table}: the shadow of load {load_id} is gone ({'taken over by load ' + row[0] if row else 'dropped'}"
            "): another load of the table started since; run the whole load again"
        )
    return row[1], row[2]


def land(
    conn: psycopg.Connection,
    snapshot: Snapshot,
    catalog: Catalog,
    table: str,
    load_id: str,
    rng: Range,
    run_id: str,
    progress: ProgressCallback | None = None,
) -> Landed:
    """Convert and COPY one range's rows into the shadow, in one transaction (see module doc)."""
    spec = catalog.table(table)
    columns, _ = plan_columns(snapshot, spec)
    rejects, landed = shadow.companions(table)
    with conn.transaction(), Spool(columns) as spool:
        _claimed(conn, table, load_id, "SHARE")
        before = conn.execute(
            sql.SQL("SELECT source_rows, rejected_rows, run_id FROM {} WHERE index = %s").format(landed),
            (rng.index,),
        ).fetchone()
        if before is not None:
            return Landed(rng.index, before[0], before[1], before[2], already=True)
        batches = lambda: snapshot.stream_columns(table, columns, rng.first, rng.last)  # noqa: E731 (a redo reads again)
        rows = stage_rows(conn, batches, spec, columns, shadow.shadow_of(table), spool, progress).rows
        with conn.cursor() as cur, cur.copy(sql.SQL("COPY {} FROM STDIN").format(rejects)) as copy:
            for rejection, raw in spool.drain():
                r = rejection
                copy.write_row((r.rowid, r.source_key, r.column, r.reason, r.kind, raw))
        rejected = sum(spool.kinds.values())
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (index, first_rowid, last_rowid, source_rows, rejected_rows, run_id)"
                " VALUES (%s, %s, %s, %s, %s, %s)"
            ).format(landed),
            (rng.index, rng.first, rng.last, rows, rejected, run_id),
        )
    return Landed(rng.index, rows, rejected, run_id)


def publish(
    conn: psycopg.Connection,
    snapshot: Snapshot,
    catalog: Catalog,
    table: str,
    load_id: str,
    run_id: str,
    policy: guard.ShrinkPolicy | None = None,
    connect: Callable[[], psycopg.Connection] | None = None,
    index_jobs: int = 1,
) -> LoadResult:
    """Make the landed ranges the table's content, as a single-stream load would (see module doc); with
    ``connect``, ``index_jobs`` of its indexes are built at once first (shadow.build_indexes)."""
    policy = guard.ShrinkPolicy.of() if policy is None else policy
    if not snapshot.has_table(table):
        return load_table(conn, snapshot, catalog, table, run_id, policy=policy)  # created empty
    spec, columns, result, source = begin(snapshot, catalog, table, run_id)
    rejects, landed = shadow.companions(table)
    with privileges(conn):
        apply_schema(conn, catalog)
        phase.require_migrated(conn, f"load {table}")
        with conn.transaction():  # the indexes first, outside the locks other loads wait for (shadow.py)
            _claimed(conn, table, load_id, "SHARE")
            shadow.build_indexes(conn, table, connect, index_jobs)
        with conn.transaction(), Spool(columns) as spool:
            conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(table)))
            planned, result.started_at = _claimed(conn, table, load_id, "UPDATE")  # the load began then
            count, rows = conn.execute(
                sql.SQL("SELECT count(*), coalesce(sum(source_rows), 0)::bigint FROM {}").format(landed)
            ).fetchone()
            if count != planned or rows != snapshot.count(table):
                raise LoadError(
                    f"{table}: {count} of {planned} ranges landed ({rows} of {snapshot.count(table)} source "
                    "rows); re-execute the run from failure to land the others"
                )
            result.source_rows = rows
            with conn.cursor(name="_range_rejects") as cur:
                cur.execute(
                    sql.SQL(
                        "SELECT _rowid, source_key, column_name, reason, kind, raw_row FROM {} ORDER BY _rowid"
                    ).format(rejects)
                )
                for rowid, key, column, reason, kind, raw in cur:
                    spool.add_raw(Rejection(rowid, key, column, reason, kind), raw)
            before = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            ).fetchone()[0]
            changes.suppress_for_load(conn)
            create_rejects(conn)
            stage, builds = shadow.shadow_of(table), None
            if shadow.obstacle(conn, table, frozenset(changes.TRIGGERS)) is None:
                builds = shadow.Shadow(conn, spec)
            else:  # something hangs on the live table: its content is replaced in place from the shadow
                changes.pause(conn, table)
            publish_stage(
                conn, snapshot, catalog, spec, columns, result, policy, source, stage, builds, spool, before
            )
            conn.execute(sql.SQL("DROP TABLE {}, {}").format(rejects, landed))
            if builds is None:
                conn.execute(sql.SQL("DROP TABLE {}").format(stage))
            conn.execute(sql.SQL("DELETE FROM {} WHERE table_name = %s").format(shadow.CLAIMS), (table,))
    return result
