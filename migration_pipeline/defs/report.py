"""The audit assets (group audit), after every table: the verification report and the provenance of each table."""

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    MaterializeResult,
    MetadataValue,
    asset,
)

from ..catalog import load_catalog
from ..move import code_version, phase
from ..move.audit import latest_load
from ..prove import provenance, report
from .connect import MigrationResource
from .move import target_key

VERIFICATION_KEY = AssetKey(["audit", "verification_report"])
PROVENANCE_KEY = AssetKey(["audit", "provenance"])


@asset(
    key=VERIFICATION_KEY,
    deps=[target_key(name) for name in load_catalog().names],
    group_name="audit",
    kinds={"markdown"},
    description=(
        "A Markdown report of every check of every table with the numbers it compared, for a change "
        "ticket (also: migration-pipeline report --out FILE)."
    ),
)
def verification_report(context: AssetExecutionContext, migration: MigrationResource) -> MaterializeResult:
    return MaterializeResult(metadata=verification(context, migration))


def verification(context, migration: MigrationResource) -> dict:
    """Build, keep and describe the verification report (the asset's metadata)."""
    snapshot = migration.snapshot_path
    with migration.connection() as conn:
        reports = report.build(conn, load_catalog(), snapshot if snapshot.is_file() else None)
        now = phase.current(conn)
    text = report.render(
        reports, target=migration.settings.describe(), snapshot=str(snapshot), phase=now.describe()
    )
    path = report.keep("verification", context.run_id, text)
    failed = [r.table for r in reports if r.blocking_failures]
    if failed:
        context.log.error(f"verification failed for {', '.join(failed)}: see {path}")
    return {
        "path": MetadataValue.path(str(path)),
        "verdict": "FAILED" if failed else "passed",
        "phase": now.name,
        "phase_detail": now.describe(),
        "failed_tables": MetadataValue.json(failed),
        "report": MetadataValue.md(text),
    }


@asset(
    key=PROVENANCE_KEY,
    deps=[target_key(name) for name in load_catalog().names],
    group_name="audit",
    kinds={"markdown"},
    description=(
        "For every table: where its rows came from (the app's file and the snapshot's sha256), when (run, "
        "start and end), with which code version, what was quarantined by reason with the SQL to list those "
        "rows, and its earlier loads (also: migration-pipeline provenance [--table T])."
    ),
)
def provenance_report(context: AssetExecutionContext, migration: MigrationResource) -> MaterializeResult:
    return MaterializeResult(metadata=provenance_of(context, migration))


def provenance_of(context, migration: MigrationResource) -> dict:
    """Build, keep and describe the provenance report (the asset's metadata)."""
    catalog = load_catalog()
    with migration.connection() as conn:
        text = provenance.render(conn, catalog)
        latest = {name: latest_load(conn, name) for name in catalog.names}
    path = report.keep("provenance", context.run_id, text)
    summary = {
        name: {
            k: str(load[k])
            for k in ("run_id", "mode", "finished_at", "code_version", "loaded_rows", "rejected_rows")
        }
        if load
        else None
        for name, load in latest.items()
    }
    stale = [n for n, load in latest.items() if load and load["code_version"] != code_version.code_version()]
    if stale:
        context.log.warning(f"loaded by another code version than the current one: {', '.join(stale)}")
    return {
        "path": MetadataValue.path(str(path)),
        "tables": MetadataValue.json(summary),
        "loaded_by_older_code": MetadataValue.json(stale),
        "report": MetadataValue.md(text),
    }


def refresh_reports(context, migration: MigrationResource) -> None:
    """Materialize both reports from a job that is not an asset job (a sync, a cutover)."""
    for key, build in ((VERIFICATION_KEY, verification), (PROVENANCE_KEY, provenance_of)):
        context.log_event(AssetMaterialization(asset_key=key, metadata=build(context, migration)))
