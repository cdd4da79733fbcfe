"""Prove, wired: the asset checks (multi-checks per table, one step each, built from proof.CHECKS and
behaviour.CHECKS), the checks-only ``reverify`` job and its ``reverify_daily`` schedule.

REVERIFY_CRON (default ``0 3 * * *``, UTC) sets when; REVERIFY_SCHEDULE=off starts it stopped.
Both are read like the other settings (environment, then .env.migration)."""

from collections.abc import Mapping

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetSelection,
    DefaultScheduleStatus,
    MetadataValue,
    ScheduleDefinition,
    define_asset_job,
    multi_asset_check,
)

from ..catalog import TableSpec, load_catalog
from ..connect.settings import REVERIFY_CRON, schedule_setting
from ..prove import behaviour, proof
from .connect import MigrationResource
from .move import target_key


def _metadata(outcome: proof.Outcome) -> dict:
    flat = {}
    for key, value in outcome.metadata.items():
        if value is None:
            continue
        flat[key] = value if isinstance(value, int | float | str | bool) else MetadataValue.json(value)
    flat["problems"] = MetadataValue.json(list(outcome.problems))
    return flat


def _multi_check(table: str, step: str, checks, evaluate) -> AssetChecksDefinition:
    """One step that evaluates ``checks`` (each with name, description, blocking) of ``table``'s asset;
    ``evaluate(conn, selected names)`` returns their proof.Outcome list."""
    key = target_key(table)
    blocking = {c.name: c.blocking for c in checks}

    @multi_asset_check(
        specs=[
            AssetCheckSpec(c.name, asset=key, blocking=c.blocking, description=c.description) for c in checks
        ],
        name=step,
        can_subset=True,
    )
    def _checks(context: AssetCheckExecutionContext, migration: MigrationResource):
        selected = {k.name for k in context.selected_asset_check_keys}
        with migration.connection() as conn:
            outcomes = evaluate(conn, migration.snapshot_path, selected)
        for outcome in outcomes:
            log = context.log.error if blocking[outcome.name] else context.log.warning
            for problem in outcome.problems:
                log(f"{table}.{outcome.name}: {problem}")
            yield AssetCheckResult(
                asset_key=key,
                check_name=outcome.name,
                passed=outcome.passed,
                severity=AssetCheckSeverity.ERROR if blocking[outcome.name] else AssetCheckSeverity.WARN,
                metadata=_metadata(outcome),
                description=outcome.description,
            )

    return _checks


def table_checks(spec: TableSpec, group: str, checks: tuple[proof.CheckDef, ...]) -> AssetChecksDefinition:
    """The proof of one table (one group of its checks)."""
    return _multi_check(
        spec.name,
        f"{spec.name}_{group}_checks",
        checks,
        lambda conn, snapshot, selected: proof.run(conn, load_catalog(), spec.name, snapshot, selected),
    )


def app_checks(table: str, checks: tuple[behaviour.AppCheck, ...]) -> AssetChecksDefinition:
    """The app's queries and constraint probes (behaviour parity) that read ``table``, run after it."""
    return _multi_check(
        table,
        f"{table}_app_checks",
        checks,
        lambda conn, snapshot, selected: [
            o for _, o in behaviour.run(conn, load_catalog(), snapshot, selected)
        ],
    )


def target_checks() -> list[AssetChecksDefinition]:
    catalog = load_catalog()
    per_table = [
        table_checks(spec, group, checks)
        for spec in catalog.tables
        for group, checks in proof.groups(catalog, spec.name).items()
    ]
    by_table: dict[str, tuple[behaviour.AppCheck, ...]] = {}
    for check in behaviour.CHECKS:
        by_table[check.table] = (*by_table.get(check.table, ()), check)
    return [*per_table, *(app_checks(table, checks) for table, checks in by_table.items())]


reverify_job = define_asset_job(
    "reverify",
    selection=AssetSelection.all_asset_checks(),
    description="Run the checks of every migrated table; moves no data. Fails when a blocking check fails.",
)


def reverify_schedule(env: Mapping[str, str] | None = None) -> ScheduleDefinition:
    when = schedule_setting("REVERIFY", REVERIFY_CRON, env)
    return ScheduleDefinition(
        name="reverify_daily",
        job=reverify_job,
        cron_schedule=when.cron,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING if when.running else DefaultScheduleStatus.STOPPED,
        description="Re-runs every table's checks (no data moved); a failed blocking check fails the run.",
    )
