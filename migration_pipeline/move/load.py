"""Load one table: snapshot rows -> converters -> COPY -> constraint quarantine -> publish -> finish, in one transaction.

A table nothing references is COPYed into its shadow, which is swapped in (shadow.py): each row is
written once. A referenced one is staged in a temporary table and merged (publish.py).

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

from datetime import UTC, datetime

import psycopg
from psycopg import sql

from ..catalog import Catalog
from ..connect.target import apply_schema, privileges
from . import changes, checksums, guard, phase, publish, quarantine, shadow
from .finish import LoadResult, finish_table
from .source import Snapshot
from .stage import LoadError, ProgressCallback, Spool, create_rejects, create_stage, plan_columns, stage_rows


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
    policy = guard.ShrinkPolicy.of() if policy is None else policy
    spec, columns, result, source = begin(snapshot, catalog, table, run_id)
    with privileges(conn):
        apply_schema(conn, catalog)
        phase.require_migrated(conn, f"load {table}")
        _load(conn, snapshot, catalog, spec, columns, result, progress, policy, source)
    return result


# Loads of tables with foreign keys take this advisory lock before they first lock a parent table, and
# hold it to their commit: one at a time. Two child tables loading at once deadlocked otherwise: one,
# holding SHARE ROW EXCLUSIVE on users from adding its foreign key, waited for ACCESS EXCLUSIVE on users
# to drop its old table, while the other, reading users, waited to add its own foreign key. The staging,
# most of a load, still runs side by side.
PARENTS_LOCK = 0x6D696766  # "migf"


def begin(snapshot: Snapshot, catalog: Catalog, table: str, run_id: str) -> tuple:
    """(spec, source columns, a started :class:`LoadResult`, the source's path) of a load of ``table``;
    the errors of a source that cannot be loaded (see module doc)."""
    spec = catalog.table(table)
    result = LoadResult(table=table, run_id=run_id, source_present=snapshot.has_table(table))
    result.started_at = datetime.now(UTC)
    result.origin = snapshot.origin()
    source = result.origin["source_path"] or str(snapshot.path)
    if not result.source_present and not spec.optional_in_source:
        guard.require_tables(snapshot.table_names(), catalog, source)
    columns, defaulted = plan_columns(snapshot, spec) if result.source_present else ((), ())
    result.defaulted_columns = defaulted
    return spec, columns, result, source


def _load(conn, snapshot, catalog, spec, columns, result: LoadResult, progress, policy, source: str) -> None:
    table = spec.name
    with conn.transaction(), Spool(columns) as spool:
        # One load of a table at a time; readers are not blocked until the content is replaced.
        conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(table)))
        before = _count(conn, table)
        changes.suppress_for_load(conn)  # cascades into child tables are not app changes either
        # a table nothing references is loaded into its shadow and swapped in: each row written once,
        # and the live table (with its change-log triggers) untouched until then
        swap = shadow.obstacle(conn, table, frozenset(changes.TRIGGERS)) is None
        builds = None
        if swap:
            builds = shadow.Shadow.create(conn, spec)
            stage = builds.name
            create_rejects(conn)
        else:
            changes.pause(conn, table)
            stage = create_stage(conn, spec, columns)
        longest = 0
        if result.source_present:
            batches = lambda: snapshot.stream_columns(spec.name, columns)  # noqa: E731 (read again on a redo)
            staged = stage_rows(conn, batches, spec, columns, stage, spool, progress)
            result.source_rows, longest = staged.rows, staged.longest_line
        publish_stage(
            conn,
            snapshot,
            catalog,
            spec,
            columns,
            result,
            policy,
            source,
            stage,
            builds,
            spool,
            before,
            longest,
        )


def publish_stage(
    conn,
    snapshot,
    catalog,
    spec,
    columns,
    result: LoadResult,
    policy,
    source: str,
    stage,
    builds,
    spool,
    before,
    longest_line: int | None = None,
) -> None:
    """The rest of a load once its rows are staged (in ``stage``, or the shadow ``builds``, with the
    rejected ones in ``spool``): quarantine, checksum, the shrink guard, the swap or the in-place
    replacement, the change log's new baseline and the audit records; inside the load's transaction,
    which holds the table's EXCLUSIVE lock and had ``before`` rows in it. ``longest_line``: the bytes of
    the longest COPY line staged, where known (:class:`~migration_pipeline.move.stage.Staged`). Also
    ranges.py's publish."""
    table = spec.name
    if spec.parents:  # before this transaction first locks a parent table (see PARENTS_LOCK)
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARENTS_LOCK,))
    stage = quarantine.constraint_rejections(
        conn, catalog, spec, columns, stage, spool, snapshot, builds, longest_line
    )
    loaded = checksums.checksum(conn, stage, spec, columns)  # the loaded source rows, converted
    result.checksum = str(loaded)
    result.removed_rows = guard.keys_gone(conn, spec, columns, stage) if before else 0
    if builds is not None:
        builds.swap_in()
        result.loaded_rows, result.cascaded_deletes = loaded.rows, {}
    else:
        result.loaded_rows, result.cascaded_deletes = publish.replace_content(
            conn, catalog, spec, columns, stage
        )
    shrinks = [guard.Shrink(table, before, result.removed_rows)] + [
        guard.Shrink(child, _count(conn, child) + n, n, via=table)
        for child, n in result.cascaded_deletes.items()
    ]
    result.shrink_confirmed = policy.judge(f"load {table}", shrinks, source)  # before anything commits
    in_target = _count(conn, table)
    if in_target != result.loaded_rows:
        raise LoadError(
            f"{table}: {result.loaded_rows} rows loaded but {in_target} in the table; rolling back"
        )
    changes.reset(conn, table)  # this load is the new baseline for the app's changes
    changes.install(conn, spec, columns)
    finish_table(conn, spec, result, spool, result.origin, _unconserved, analyze=builds is None)


def _unconserved(result: LoadResult) -> LoadError:
    return LoadError(
        f"{result.table}: {result.source_rows} source rows but {result.loaded_rows} loaded + "
        f"{result.rejected_rows} quarantined; rolling back"
    )


def _count(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]


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
