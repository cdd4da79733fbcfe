"""The verification report as an asset (group audit), after every table."""

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from .. import report
from ..catalog import load_catalog
from ..local_postgres import state_dir
from .assets import target_key
from .resources import MigrationResource


@asset(
    key=AssetKey(["audit", "verification_report"]),
    deps=[target_key(name) for name in load_catalog().names],
    group_name="audit",
    kinds={"markdown"},
    description=(
        "A Markdown report of every check of every table with the numbers it compared, for a change "
        "ticket (also: python -m migration_pipeline.report --out FILE)."
    ),
)
def verification_report(context: AssetExecutionContext, migration: MigrationResource) -> MaterializeResult:
    snapshot = migration.snapshot_path
    with migration.connection() as conn:
        reports = report.build(conn, load_catalog(), snapshot if snapshot.is_file() else None)
    text = report.render(reports, target=migration.settings.describe(), snapshot=str(snapshot))
    path = state_dir() / "reports" / f"verification-{context.run_id}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    failed = [r.table for r in reports if r.blocking_failures]
    if failed:
        context.log.error(f"verification failed for {', '.join(failed)}: see {path}")
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(str(path)),
            "verdict": "FAILED" if failed else "passed",
            "failed_tables": MetadataValue.json(failed),
            "report": MetadataValue.md(text),
        }
    )
