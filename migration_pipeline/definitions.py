"""The Dagster code location: ``dagster ... -m migration_pipeline.definitions``."""

from dagster import Definitions

from .defs.assets import source_snapshot, target_assets
from .defs.checks import target_checks
from .defs.jobs import migrate_job, reverify_job
from .defs.resources import MigrationResource

defs = Definitions(
    assets=[source_snapshot, *target_assets()],
    asset_checks=target_checks(),
    jobs=[migrate_job, reverify_job],
    resources={"migration": MigrationResource()},
)
