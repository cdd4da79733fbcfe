"""Move, wired: the assets (a consistent snapshot of the SQLite source, then one PostgreSQL table asset per
table spec) and the ``migrate`` job that materializes everything, checks included."""

import time

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    AssetsDefinition,
    AssetSelection,
    AssetSpec,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    define_asset_job,
)

from ..catalog import TableSpec, load_catalog
from ..move.code_version import code_version
from ..move.finish import LoadResult
from ..move.guard import preflight
from ..move.load import load_table
from ..move.phase import PhaseError
from ..move.source import Snapshot, SourceError, take_snapshot
from ..prove.provenance import load_sql, quarantine_sql
from ..samples.default_source import ensure_source
from .connect import MigrationResource
from .lineage import column_lineage, lineage_markdown, table_schema

SNAPSHOT_KEY = AssetKey(["sqlite", "snapshot"])


def source_key(table: str) -> AssetKey:
    return AssetKey(["sqlite", table])


# The app's SQLite tables: external assets (never materialized here), observed by every snapshot.
SOURCE_TABLES = [
    AssetSpec(
        source_key(name),
        group_name="source",
        kinds={"sqlite"},
        description=f"Table `{name}` of the app's SQLite database (SQLITE_PATH), read only and never written; "
        "each snapshot records its row count and the file's fingerprint as an observation.",
    )
    for name in load_catalog().names
]
CODE_VERSION = code_version()
PROGRESS_EVERY_S = 5.0


def target_key(table: str) -> AssetKey:
    return AssetKey(["postgres", table])


@asset(
    key=SNAPSHOT_KEY,
    deps=[spec.key for spec in SOURCE_TABLES],
    group_name="source",
    kinds={"sqlite"},
    description=(
        "A consistent copy of the app's SQLite database (SQLITE_PATH), taken through SQLite's online "
        "backup from a read-only connection: every table is migrated from this one point in time, and the "
        "app is blocked only for the copy. Without a SQLITE_PATH file and with the embedded PostgreSQL, a "
        "sample database shaped like the app's is generated there first. A copy that is not the app's "
        "database (a table other than analysis_queue/analysis_chunks missing, a damaged file) or that would "
        "shrink a target table beyond MAX_SHRINK_SHARE without the operator's confirmation is refused "
        "before any table is loaded, and the previous snapshot kept."
    ),
)
def source_snapshot(context: AssetExecutionContext, migration: MigrationResource) -> MaterializeResult:
    settings = migration.settings
    try:
        generated = ensure_source(settings, log=context.log.warning)
    except SourceError as err:
        raise Failure(str(err)) from err
    policy = migration.shrink_policy()
    source = str(settings.sqlite_path.resolve())
    with migration.connection() as conn:  # the target is only read: nothing is loaded before this passes
        info = take_snapshot(
            settings.sqlite_path,
            migration.snapshot_path,
            vet=lambda snap: preflight(conn, snap, load_catalog(), policy, source),
        )
    for spec in SOURCE_TABLES:  # a changed source shows as new observations of its tables
        table = spec.key.path[-1]
        context.log_event(
            AssetObservation(
                asset_key=spec.key,
                metadata={
                    "present": table in info.tables,
                    "dagster/row_count": info.tables.get(table, 0),
                    "source_bytes": info.source_size,
                    "snapshot_sha256": info.snapshot_sha256,
                },
            )
        )
    return MaterializeResult(
        metadata={
            "source_path": MetadataValue.path(str(info.source_path.resolve())),
            "source_bytes": info.source_size,
            "snapshot_sha256": info.snapshot_sha256,
            "generated_sample": generated,
            "tables": MetadataValue.json(info.tables),
            "dagster/row_count": sum(info.tables.values()),
        }
    )


def _progress_logger(context: AssetExecutionContext, total: int):
    start = last = time.monotonic()

    def report(rows: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < PROGRESS_EVERY_S:
            return
        last = now
        rate = rows / (now - start)
        eta = (total - rows) / rate if rate else float("inf")
        context.log.info(f"{rows:,}/{total:,} rows read ({rate:,.0f} rows/s, ETA {eta:,.0f} s)")

    return report


def _metadata(spec: TableSpec, result: LoadResult) -> dict:
    loaded = (
        [c for c in spec.column_names if c not in result.defaulted_columns] if result.source_present else []
    )
    return {
        "dagster/table_name": f"public.{spec.name}",
        "dagster/row_count": result.loaded_rows,
        "source_present": result.source_present,
        "source_rows": result.source_rows,
        "loaded_rows": result.loaded_rows,
        "rejected_rows": result.rejected_rows,
        "rejected_by_reason": MetadataValue.json(result.rejected_by_reason),
        "duration_s": round(result.seconds, 3),
        "rows_per_s": round(result.rows_per_second, 1),
        "defaulted_columns": MetadataValue.json(list(result.defaulted_columns)),
        "cascaded_deletes": MetadataValue.json(result.cascaded_deletes),
        "removed_rows": result.removed_rows,
        "shrink_confirmed": MetadataValue.json(result.shrink_confirmed or {}),
        "dagster/column_lineage": column_lineage(source_key(spec.name), loaded),
        "column_lineage": MetadataValue.md(lineage_markdown(spec, source_key(spec.name), loaded)),
        "run_id": result.run_id,
        "code_version": CODE_VERSION,
        "source_path": result.origin.get("source_path") or "not recorded",
        "snapshot_sha256": result.origin.get("snapshot_sha256"),
        "table_load_sql": MetadataValue.md(f"```sql\n{load_sql(result.run_id, spec.name)}\n```"),
        "quarantine_sql": MetadataValue.md(f"```sql\n{quarantine_sql(result.run_id, spec.name)}\n```"),
        "provenance": "python -m migration_pipeline.prove.provenance --table " + spec.name,
    }


def table_asset(spec: TableSpec) -> AssetsDefinition:
    """The asset that (re)loads one target table from the snapshot."""

    @asset(
        key=target_key(spec.name),
        deps=[SNAPSHOT_KEY, *(target_key(p) for p in spec.parents)],
        group_name="target",
        kinds={"postgres"},
        code_version=CODE_VERSION,
        owners=["team:migration"],
        metadata={
            "dagster/column_schema": table_schema(spec),
            "dagster/table_name": f"public.{spec.name}",
            "column_lineage": MetadataValue.md(
                lineage_markdown(spec, source_key(spec.name), spec.column_names)
            ),
        },
        description=(
            f"PostgreSQL table `{spec.name}`, replaced in one transaction with the snapshot's rows: every value "
            "converted by the value rules, bulk-loaded with COPY; rows that cannot load exactly (bad values, "
            "orphans, constraint breaches) are quarantined in migration_audit.rejected_rows with a reason."
        ),
    )
    def _load(context: AssetExecutionContext, migration: MigrationResource) -> MaterializeResult:
        with Snapshot(migration.snapshot_path) as snapshot, migration.connection() as conn:
            total = snapshot.count(spec.name) if snapshot.has_table(spec.name) else 0
            try:
                result = load_table(
                    conn,
                    snapshot,
                    load_catalog(),
                    spec.name,
                    context.run_id,
                    _progress_logger(context, total),
                    policy=migration.shrink_policy(),
                )
            except PhaseError as err:  # the app writes to PostgreSQL: a load would overwrite its writes
                raise Failure(description=str(err)) from err
        if not result.source_present:
            context.log.info(f"source has no table {spec.name}: created empty")
        if result.rejected_rows:
            context.log.warning(
                f"{spec.name}: {result.rejected_rows} rows quarantined {result.rejected_by_reason}"
            )
        if result.shrink_confirmed:
            context.log.warning(
                f"{spec.name}: shrink beyond the guard's limit, confirmed by the operator and recorded in "
                f"migration_audit.table_loads: {result.shrink_confirmed}"
            )
        if result.cascaded_deletes:
            context.log.warning(
                f"{spec.name}: rows gone from the source were still referenced; removed dependants "
                f"{result.cascaded_deletes} (re-materialize those tables)"
            )
        return MaterializeResult(metadata=_metadata(spec, result))

    return _load


def target_assets() -> list[AssetsDefinition]:
    return [table_asset(spec) for spec in load_catalog().tables]


migrate_job = define_asset_job(
    "migrate",
    selection=AssetSelection.all(),
    description="Snapshot the SQLite source, then load every table in foreign-key order, with its checks.",
)
