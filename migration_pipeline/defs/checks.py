"""Asset checks, one factory over the table specs."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    MetadataValue,
    asset_check,
)

from ..catalog import TableSpec, load_catalog
from ..verify import conservation
from .assets import target_key
from .resources import MigrationResource


def conservation_check(spec: TableSpec) -> AssetChecksDefinition:
    @asset_check(
        asset=target_key(spec.name),
        name="rows_conserved",
        blocking=True,
        description=(
            "Every source row is accounted for: source rows = loaded + quarantined (as recorded by the last "
            "load and found in migration_audit.rejected_rows), and the table holds exactly the loaded rows."
        ),
    )
    def _check(context: AssetCheckExecutionContext, migration: MigrationResource) -> AssetCheckResult:
        with migration.connection() as conn:
            found = conservation(conn, spec.name)
        problems = found.problems
        for problem in problems:
            context.log.error(f"{spec.name}: {problem}")
        metadata = {k: v for k, v in found.as_metadata().items() if v is not None}
        metadata["problems"] = MetadataValue.json(problems)
        return AssetCheckResult(
            passed=not problems, metadata=metadata, description="; ".join(problems) or None
        )

    return _check


def target_checks() -> list[AssetChecksDefinition]:
    return [conservation_check(spec) for spec in load_catalog().tables]
