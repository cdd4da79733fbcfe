"""Move, wired: the assets (a consistent snapshot of the SQLite source, then one PostgreSQL table asset per
table spec) and the ``migrate`` job that materializes everything, checks included."""

from dagster import (
    AssetExecutionContext,
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
from ..connect.settings import fan_out_setting
from ..move import corrections
from ..move.guard import preflight
from ..move.load import load_table
from ..move.phase import PhaseError
from ..move.source import Snapshot, SourceError, take_snapshot
from ..samples.default_source import ensure_source
from .connect import MigrationResource
from .fanout import fanned_asset
from .tables import (
    CODE_VERSION,
    SNAPSHOT_KEY,
    definition_metadata,
    description,
    progress_logger,
    reported,
    source_key,
    target_key,
)

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
        amended: dict[str, int] = {}
        info = take_snapshot(
            settings.sqlite_path,
            migration.snapshot_path,
            vet=lambda snap: preflight(conn, snap, load_catalog(), policy, source),
            amend=lambda partial: amended.update(corrections.apply_to(conn, partial)),
        )
    if amended.get("changed"):
        context.log.warning(
            f"{amended['changed']} corrected rows were changed by the app since their correction: the app's "
            "version is loaded (`migration-pipeline quarantine corrections` lists the corrections)"
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
            "corrections_applied": amended.get("rewritten", 0),
            "tables": MetadataValue.json(info.tables),
            "dagster/row_count": sum(info.tables.values()),
        }
    )


def table_asset(spec: TableSpec) -> AssetsDefinition:
    """The asset that (re)loads one target table from the snapshot."""

    @asset(
        key=target_key(spec.name),
        deps=[SNAPSHOT_KEY, *(target_key(p) for p in spec.parents)],
        group_name="target",
        kinds={"postgres"},
        code_version=CODE_VERSION,
        owners=["team:migration"],
        metadata=definition_metadata(spec),
        description=description(spec),
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
                    progress_logger(context, total),
                    policy=migration.shrink_policy(),
                )
            except PhaseError as err:  # the app writes to PostgreSQL: a load would overwrite its writes
                raise Failure(description=str(err)) from err
            return MaterializeResult(metadata=reported(context, spec, result, conn))

    return _load


def target_assets() -> list[AssetsDefinition]:
    """One asset per table; a table of FAN_OUT_TABLES that nothing references is loaded in ranges."""
    catalog, fanned = load_catalog(), fan_out_setting().tables
    return [
        fanned_asset(spec) if spec.name in fanned and not catalog.children(spec.name) else table_asset(spec)
        for spec in catalog.tables
    ]


migrate_job = define_asset_job(
    "migrate",
    selection=AssetSelection.all(),
    description="Snapshot the SQLite source, then load every table in foreign-key order, with its checks.",
)
