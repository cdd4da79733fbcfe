"""Prove, wired: the asset checks (one multi-check per table and step, built from the one registry,
prove/checks.py), the checks-only ``reverify`` job and its ``reverify_daily`` schedule.

REVERIFY_CRON (default ``0 3 * * *``, UTC) sets when; REVERIFY_SCHEDULE=off starts it stopped.
Both are read like the other settings (environment, then .env.migration)."""

from collections.abc import Mapping

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetSelection,
    MetadataValue,
    ScheduleDefinition,
    define_asset_job,
    multi_asset_check,
)

from ..catalog import load_catalog
from ..connect.settings import REVERIFY_CRON
from ..prove import checks, proof
from ..prove.outcome import Outcome
from .connect import MigrationResource, setting_schedule
from .move import target_key


def _metadata(outcome: Outcome) -> dict:
    flat = {}
    for key, value in outcome.metadata.items():
        if value is None:
            continue
        flat[key] = value if isinstance(value, int | float | str | bool) else MetadataValue.json(value)
    flat["problems"] = MetadataValue.json(list(outcome.problems))
    return flat


def evaluations(conn, table: str, snapshot_path) -> list[AssetCheckEvaluation]:
    """Every check of ``table`` (the app's too) as evaluations of its asset checks, for a job that is not
    an asset job (a sync, a cutover) to record: the checks' pages then show them."""
    key, outcomes = (
        target_key(table),
        proof.run(conn, load_catalog(), table, snapshot_path, with_app_checks=True),
    )
    return [
        AssetCheckEvaluation(
            asset_key=key,
            check_name=outcome.name,
            passed=outcome.passed,
            severity=AssetCheckSeverity.ERROR
            if checks.BY_NAME[outcome.name].blocking
            else AssetCheckSeverity.WARN,
            metadata=_metadata(outcome),
            description=outcome.description,
        )
        for outcome in outcomes
    ]


def step_checks(table: str, step: str, selected: tuple[checks.Check, ...]) -> AssetChecksDefinition:
    """One step that evaluates ``selected`` (checks of the registry) on ``table``'s asset."""
    key = target_key(table)
    blocking = {c.name: c.blocking for c in selected}

    @multi_asset_check(
        specs=[
            AssetCheckSpec(c.name, asset=key, blocking=c.blocking, description=c.description)
            for c in selected
        ],
        name=f"{table}_{step}_checks",
        can_subset=True,
    )
    def _checks(context: AssetCheckExecutionContext, migration: MigrationResource):
        names = {k.name for k in context.selected_asset_check_keys}
        chosen = [(table, c) for c in selected if c.name in names]
        with migration.connection() as conn:
            outcomes = checks.run(conn, load_catalog(), migration.snapshot_path, chosen)
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


def target_checks() -> list[AssetChecksDefinition]:
    """The registry's checks (prove/checks.py) as Dagster asset checks, one multi-check per table and step."""
    return [step_checks(table, step, selected) for table, step, selected in checks.steps(load_catalog())]


reverify_job = define_asset_job(
    "reverify",
    selection=AssetSelection.all_asset_checks(),
    description="Run the checks of every migrated table; moves no data. Fails when a blocking check fails.",
)


def reverify_schedule(env: Mapping[str, str] | None = None) -> ScheduleDefinition:
    return setting_schedule(
        "reverify_daily", reverify_job, "REVERIFY", REVERIFY_CRON,
        "Re-runs every table's checks (no data moved); a failed blocking check fails the run.", env,
    )  # fmt: skip
