"""The Dagster code location: ``dagster ... -m migration_pipeline.definitions``."""

from dagster import Definitions

from .defs.assets import SOURCE_TABLES, source_snapshot, target_assets
from .defs.checks import target_checks
from .defs.jobs import migrate_job, reverify_job
from .defs.monitoring import postgres_alert, postgres_health, postgres_monitor
from .defs.report import provenance_report, verification_report
from .defs.resources import MigrationResource
from .defs.schedules import reverify_schedule
from .defs.switch import cutover_job, rollback_export, sync

defs = Definitions(
    assets=[
        *SOURCE_TABLES,
        source_snapshot,
        *target_assets(),
        verification_report,
        provenance_report,
        postgres_health,
    ],
    asset_checks=target_checks(),
    jobs=[migrate_job, reverify_job, sync, cutover_job, rollback_export, postgres_alert],
    sensors=[postgres_monitor],
    schedules=[reverify_schedule()],
    resources={"migration": MigrationResource()},
)
