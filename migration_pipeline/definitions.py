"""The Dagster code location: ``dagster ... -m migration_pipeline.definitions``."""

from dagster import Definitions

from .defs.assets import SOURCE_TABLES, source_snapshot, target_assets
from .defs.checks import target_checks
from .defs.jobs import migrate_job, reverify_job
from .defs.monitoring import postgres_alert, postgres_health, postgres_monitor
from .defs.phases import (
    PHASE_ASSET,
    compact_change_log,
    compaction_schedule,
    declare_switch,
    finalize_job,
    resume_change_log,
    withdraw_switch,
)
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
        PHASE_ASSET,
    ],
    asset_checks=target_checks(),
    jobs=[
        migrate_job,
        reverify_job,
        sync,
        cutover_job,
        rollback_export,
        postgres_alert,
        declare_switch,
        withdraw_switch,
        finalize_job,
        resume_change_log,
        compact_change_log,
    ],
    sensors=[postgres_monitor],
    schedules=[reverify_schedule(), compaction_schedule()],
    resources={"migration": MigrationResource()},
)
