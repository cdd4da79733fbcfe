"""The Dagster code location: ``dagster ... -m migration_pipeline.definitions``."""

from dagster import Definitions, Field, Permissive, Selector, configured, multi_or_in_process_executor

from .defs.alerts import alert_on_failure
from .defs.app_performance import app_performance_job, app_performance_spec
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

# the run config of Dagster's own executor (multiprocess, the default, or in_process), passed through
_EXECUTION = Selector(
    {"multiprocess": Field(Permissive(), default_value={}), "in_process": Field(Permissive())}
)


# what each step process would otherwise import again: the code location, and the instance's storage
# (dagster-postgres, SQLAlchemy: 0.36 s of every step's start, by hand; `make run` 24.9 -> 15.9 s)
PRELOADED = ["migration_pipeline.definitions", "migration_pipeline.defs.instance_storage"]


@configured(multi_or_in_process_executor, config_schema=Field(_EXECUTION, default_value={"multiprocess": {}}))
def executor(config: dict) -> dict:
    """Dagster's multiprocess executor, each step forked from a process that imported Dagster and this
    code location once (its ``forkserver`` start method) rather than a new Python importing them again:
    measured 106 -> 77 s for the loads of 1M tweets on 2 cores. The run config is Dagster's, e.g.
    ``{"execution": {"config": {"multiprocess": {"max_concurrent": 4}}}}`` or ``{"in_process": {}}``."""
    if "in_process" in config:
        return config
    start = {"forkserver": {"preload_modules": PRELOADED}}
    return {"multiprocess": {"start_method": start, **config["multiprocess"]}}


defs = Definitions(
    assets=[
        *SOURCE_TABLES,
        source_snapshot,
        *target_assets(),
        verification_report,
        provenance_report,
        postgres_health,
        PHASE_ASSET,
        app_performance_spec,
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
        app_performance_job,
    ],
    sensors=[postgres_monitor, alert_on_failure],
    schedules=[reverify_schedule(), compaction_schedule()],
    resources={"migration": MigrationResource()},
    executor=executor,
)
