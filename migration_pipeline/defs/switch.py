"""Switching over, and back: the sync, cutover and rollback_export jobs (thin wiring over delta.py,
cutover.py and rollback.py). Each delta applied is recorded on the postgres/<table> assets as a
materialization (mode delta) so their history in the UI shows every change of the data."""

from pathlib import Path

from dagster import (
    AssetCheckSeverity,
    AssetMaterialization,
    Config,
    Failure,
    In,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    job,
    op,
)

from ..catalog import load_catalog
from ..prove import quarantined
from ..switch import cutover, delta, rollback
from .connect import MigrationResource
from .move import target_key
from .prove import evaluations
from .report import refresh_reports


def _record(context: OpExecutionContext, result: delta.SyncResult, conn) -> dict[str, int]:
    """A delta materialization and a log line per changed table: rows inserted, updated, deleted, newly
    quarantined (a warning); tables the sync left alone keep their materialization and its checks.
    Returns the changed tables with their newly quarantined rows."""
    changed = {}
    for name, table in result.tables.items():
        load, fresh = table.result, quarantined.new_rows(conn, name)
        if not (table.added or table.removed or fresh):
            continue
        changed[name] = len(fresh)
        total, preview = quarantined.preview_markdown(conn, name)
        context.log_event(
            AssetMaterialization(
                asset_key=target_key(name),
                description=f"delta sync {result.run_id}",
                metadata={
                    "mode": "delta",
                    "sync_run": result.run_id,
                    "dagster/row_count": load.loaded_rows,
                    "source_rows": load.source_rows,
                    "loaded_rows": load.loaded_rows,
                    "rejected_rows": load.rejected_rows,
                    "rejected_by_reason": MetadataValue.json(load.rejected_by_reason),
                    "source_rows_added": table.added,
                    "source_rows_removed": table.removed,
                    "rows_inserted": table.inserted,
                    "rows_updated": table.updated,
                    "rows_deleted": table.deleted,
                    "rows_converted_again": table.restaged,
                    "newly_quarantined": len(fresh),
                    "quarantined_rows": total,
                    "quarantine_preview": MetadataValue.md(preview),
                    "change_set_sha256": result.identity,
                },
            )
        )
        line = f"{name}: {table.inserted:,} inserted, {table.updated:,} updated, {table.deleted:,} deleted"
        if fresh:
            shown = "; ".join(
                f"{r['source_key']} {r['column_name'] or '-'}: {r['reason']}" for r in fresh[:5]
            )
            context.log.warning(f"{line}, {len(fresh):,} NEWLY QUARANTINED: {shown}")
        else:
            context.log.info(line)
    context.log.info(
        f"sync {result.run_id}: {len(changed)} of {len(result.tables)} tables changed; diff "
        f"{result.diff_seconds:.2f} s, apply {result.apply_seconds:.2f} s, baseline {result.baseline_seconds:.2f} s"
    )
    return changed


def _verify(context: OpExecutionContext, migration: MigrationResource, tables) -> None:
    """Evaluate every check of ``tables`` (recorded on their assets' checks) and refresh both reports;
    fail the step when a blocking check fails (the data stays as synced: the checks say what is wrong)."""
    failed = []
    with migration.connection() as conn:
        for table in tables:
            for evaluation in evaluations(conn, table, migration.snapshot_path):
                context.log_event(evaluation)
                if not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR:
                    failed.append(f"{table}.{evaluation.check_name}")
    refresh_reports(context, migration)
    if failed:
        raise Failure(description=f"blocking checks failed after the sync: {', '.join(failed)}")


def _sync(context: OpExecutionContext, migration: MigrationResource, run_id: str) -> delta.SyncResult:
    with migration.connection() as conn:
        try:
            result = delta.sync(
                conn, load_catalog(), migration.settings.sqlite_path, migration.snapshot_path, run_id
            )
        except delta.DeltaError as err:
            raise Failure(description=f"{err} (nothing was changed)") from err
        changed = _record(context, result, conn)
    _verify(context, migration, changed)
    return result


@op(description="Apply what the app changed in SQLite since the last load or sync (one transaction).")
def delta_sync(context: OpExecutionContext, migration: MigrationResource) -> None:
    _sync(context, migration, context.run_id)


@job(
    description=(
        "Bring PostgreSQL up to date with the app's SQLite changes since the last migration or sync: only "
        "changed rows, with the same value rules, quarantine and audit. Safe to run any time before the "
        "switch; refuses (changing nothing) once the app writes to PostgreSQL."
    )
)
def sync():
    delta_sync()


class CatchUpConfig(Config):
    small_rows: int = 1_000  # sync until a round moves at most this many rows
    max_rounds: int = 10


class FreezeConfig(Config):
    writes_stopped: bool = False  # the app's writes are already stopped: no signal to wait for
    freeze_signal: str = ""  # default .local/cutover/freeze: touch it once the app's writes are stopped
    timeout_s: float = 3_600.0


@op(description="Sync repeatedly while the app writes, until a round moves few rows.")
def catch_up(context: OpExecutionContext, config: CatchUpConfig, migration: MigrationResource) -> None:
    with migration.connection() as conn:
        cutover.record(conn, context.run_id, migration.settings.sqlite_path, "started")
        rounds = cutover.catch_up(
            conn, load_catalog(), migration.settings.sqlite_path, migration.snapshot_path, context.run_id,
            small_rows=config.small_rows, max_rounds=config.max_rounds, log=context.log.info,
        )  # fmt: skip
    context.log.info(f"caught up in {len(rounds)} round(s); the last moved {rounds[-1].changed_rows:,} rows")


@op(ins={"caught_up": In(Nothing)}, description="Wait until the app's writes are stopped (the signal file).")
def wait_for_freeze(context: OpExecutionContext, config: FreezeConfig) -> float:
    signal = None
    if not config.writes_stopped:
        started = context.instance.get_run_record_by_id(context.run_id).create_timestamp.timestamp()
        path = Path(config.freeze_signal) if config.freeze_signal else None
        signal = cutover.freeze_signal(path, started, log=context.log.warning)
    try:
        return cutover.wait_for_freeze(signal, timeout_s=config.timeout_s, log=context.log.info)
    except cutover.CutoverError as err:
        raise Failure(description=str(err)) from err


@op(description="The final sync during the freeze; proves the source did not change while it ran.")
def final_sync(context: OpExecutionContext, migration: MigrationResource, frozen_at: float) -> float:
    with migration.connection() as conn:
        try:
            result, freeze = cutover.final_sync(
                conn, load_catalog(), migration.settings.sqlite_path, migration.snapshot_path, context.run_id,
                frozen_at, log=context.log.info,
            )  # fmt: skip
        except (cutover.CutoverError, delta.DeltaError) as err:
            raise Failure(description=str(err)) from err
        _record(context, result, conn)
    context.log.info(f"write freeze: {freeze:.2f} s; the app may switch to PostgreSQL now")
    return freeze


@op(description="Every blocking check and the app's queries on every table, against the synced source.")
def verify_cutover(context: OpExecutionContext, migration: MigrationResource, freeze_seconds: float) -> None:
    with migration.connection() as conn:
        try:
            cutover.verify(
                conn, load_catalog(), migration.settings.sqlite_path, migration.snapshot_path, context.run_id
            )
        except cutover.CutoverError as err:
            raise Failure(description=str(err), metadata={"freeze_seconds": freeze_seconds}) from err
    context.log.info(f"cutover {context.run_id} verified; write freeze was {freeze_seconds:.2f} s")
    _verify(context, migration, load_catalog().names)  # on every table's checks page, and the reports


@job(
    name="cutover",
    description=(
        "The cutover runbook: catch-up syncs while the app writes, then wait for the freeze signal (touch "
        ".local/cutover/freeze once the app's writes are stopped, or run with writes_stopped), a final "
        "sync, every check. Safe to abort at any step: each sync is one transaction, and "
        "migration_audit.cutovers.state says where it stopped."
    ),
)
def cutover_job():
    verify_cutover(final_sync(wait_for_freeze(catch_up())))


class RollbackConfig(Config):
    out: str  # a new file: never an existing one, never the app's own
    include_quarantined: bool = True


@op(
    description="Export PostgreSQL to a new SQLite file in the app's format (rows written after the switch included)."
)
def export_to_sqlite(
    context: OpExecutionContext, config: RollbackConfig, migration: MigrationResource
) -> None:
    out = Path(config.out)
    with migration.connection() as conn:
        try:
            result = rollback.export_configured(
                conn, load_catalog(), migration.settings, out, include_quarantined=config.include_quarantined
            )
        except rollback.ExportError as err:
            raise Failure(description=str(err)) from err
    context.log.info(rollback.summary(result))
    context.log_event(
        AssetMaterialization(
            asset_key=["rollback", "sqlite_export"],
            description=f"rollback export {out}",
            metadata={
                "path": MetadataValue.path(str(out.resolve())),
                "rows": MetadataValue.json({name: t.rows for name, t in result.tables.items()}),
                "quarantined_restored": MetadataValue.json({n: t.restored for n, t in result.tables.items()}),
            },
        )
    )


@job(
    name="rollback_export",
    description=(
        "Export PostgreSQL (with everything the app wrote there) to a NEW SQLite file in the app's own "
        "format; the original SQLite file is never touched. See the README's rollback runbook."
    ),
)
def rollback_export():
    export_to_sqlite()
