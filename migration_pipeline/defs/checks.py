"""Asset checks: one multi-check per table (one step), its checks built from proof.CHECKS."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    MetadataValue,
    multi_asset_check,
)

from .. import behaviour, proof
from ..catalog import TableSpec, load_catalog
from .assets import target_key
from .resources import MigrationResource


def _metadata(outcome: proof.Outcome) -> dict:
    flat = {}
    for key, value in outcome.metadata.items():
        if value is None:
            continue
        flat[key] = value if isinstance(value, int | float | str | bool) else MetadataValue.json(value)
    flat["problems"] = MetadataValue.json(list(outcome.problems))
    return flat


def table_checks(spec: TableSpec, group: str, checks: tuple[proof.CheckDef, ...]) -> AssetChecksDefinition:
    key = target_key(spec.name)
    definitions = {c.name: c for c in checks}

    @multi_asset_check(
        specs=[
            AssetCheckSpec(c.name, asset=key, blocking=c.blocking, description=c.description) for c in checks
        ],
        name=f"{spec.name}_{group}_checks",
        can_subset=True,
    )
    def _checks(context: AssetCheckExecutionContext, migration: MigrationResource):
        selected = {k.name for k in context.selected_asset_check_keys}
        with migration.connection() as conn:
            outcomes = proof.run(conn, load_catalog(), spec.name, migration.snapshot_path, selected)
        for outcome in outcomes:
            blocking = definitions[outcome.name].blocking
            for problem in outcome.problems:
                (context.log.error if blocking else context.log.warning)(
                    f"{spec.name}.{outcome.name}: {problem}"
                )
            yield AssetCheckResult(
                asset_key=key,
                check_name=outcome.name,
                passed=outcome.passed,
                severity=AssetCheckSeverity.ERROR if blocking else AssetCheckSeverity.WARN,
                metadata=_metadata(outcome),
                description=outcome.description,
            )

    return _checks


def target_checks() -> list[AssetChecksDefinition]:
    catalog = load_catalog()
    per_table = [
        table_checks(spec, group, checks)
        for spec in catalog.tables
        for group, checks in proof.groups(catalog, spec.name).items()
    ]
    return [*per_table, app_behaviour_checks]


@multi_asset_check(
    specs=[
        AssetCheckSpec(c.name, asset=target_key(c.table), blocking=True, description=c.description)
        for c in behaviour.CHECKS
    ],
    name="app_behaviour_checks",
    can_subset=True,
)
def app_behaviour_checks(context: AssetCheckExecutionContext, migration: MigrationResource):
    """The app's queries and constraint probes (behaviour parity), after every table they read."""
    selected = {k.name for k in context.selected_asset_check_keys}
    with migration.connection() as conn:
        results = behaviour.run(conn, load_catalog(), migration.snapshot_path, selected)
    for check, outcome in results:
        for problem in outcome.problems:
            context.log.error(f"{check.table}.{outcome.name}: {problem}")
        yield AssetCheckResult(
            asset_key=target_key(check.table),
            check_name=outcome.name,
            passed=outcome.passed,
            severity=AssetCheckSeverity.ERROR,
            metadata=_metadata(outcome),
            description=outcome.description,
        )
