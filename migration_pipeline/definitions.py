"""The Dagster code location: ``dagster ... -m migration_pipeline.definitions``."""

from dagster import Definitions

from .defs.connect import MigrationResource
from .defs.move import SOURCE_TABLES, migrate_job, source_snapshot, target_assets
from .defs.phases import (
    PHASE_ASSET,
    compact_change_log,
    compaction_schedule,
    declare_switch,
    finalize_job,
    resume_change_log,
    withdraw_switch,
)
from .defs.prove import reverify_job, reverify_schedule, target_checks
from .defs.report import provenance_report, verification_report
from .defs.switch import cutover_job, rollback_export, sync
from .defs.watch import postgres_alert, postgres_health, postgres_monitor

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
