"""The Dagster code location: ``dagster ... -m migration_pipeline.definitions``."""

from dagster import Definitions

from .defs.assets import source_snapshot, target_assets
from .defs.checks import target_checks
from .defs.jobs import migrate_job, reverify_job
from .defs.report import verification_report
from .defs.resources import MigrationResource
from .defs.schedules import reverify_schedule

defs = Definitions(
    assets=[source_snapshot, *target_assets(), verification_report],
    asset_checks=target_checks(),
    jobs=[migrate_job, reverify_job],
    schedules=[reverify_schedule()],
    resources={"migration": MigrationResource()},
)
