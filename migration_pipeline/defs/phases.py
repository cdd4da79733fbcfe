"""The switch as a recorded fact (thin wiring over phase.py, finalize.py and changes.py): the jobs
declare_switch, withdraw_switch, finalize, resume_change_log and compact_change_log, and the asset
``audit/phase`` on which each of them records the phase now in force."""

from collections.abc import Mapping

from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetSpec,
    Config,
    Failure,
    MetadataValue,
    OpExecutionContext,
    ScheduleDefinition,
    job,
    op,
)

from ..catalog import load_catalog
from ..connect.settings import COMPACT_CRON
from ..move import changes, phase
from ..switch import finalize
from .connect import MigrationResource, setting_schedule

PHASE_KEY = AssetKey(["audit", "phase"])

PHASE_ASSET = AssetSpec(
    PHASE_KEY,
    group_name="audit",
    kinds={"postgres"},
    description=(
        "Which phase the migrated database is in, and since when and by whom (migration_audit.phases): "
        "**migrated** (the app writes to SQLite: any change in PostgreSQL fails the checks), **switched** "
        "(the app writes to PostgreSQL: the change log explains its writes), **finalized** (the soak period "
        "ended: no change log; the checks prove structure, integrity and the app's queries)."
    ),
)


class DeclareConfig(Config):
    declared_by: str = ""  # who declares it (default: the OS user at this host)
    note: str = ""  # why, for the audit trail (e.g. the change ticket)


def _record(context: OpExecutionContext, now: phase.Phase, extra: Mapping | None = None) -> None:
    context.log.info(f"the database is {now.describe()}")
    context.log_event(
        AssetMaterialization(
            asset_key=PHASE_KEY,
            description=now.describe(),
            metadata={
                **{k: v for k, v in now.as_metadata().items() if v is not None},
                "meaning": now.meaning,
                **(extra or {}),
            },
        )
    )


def _rebase(context: OpExecutionContext, config: DeclareConfig, migration: MigrationResource, step, key: str):
    """Run finalize.finalize or finalize.resume; record the phase and the baselines they recorded."""
    with migration.connection() as conn:
        try:
            recorded = step(
                conn, load_catalog(), run_id=context.run_id, by=config.declared_by or None, note=config.note
            )
        except phase.PhaseError as err:
            raise Failure(description=str(err)) from err
        now = phase.current(conn)
    _record(context, now, {key: MetadataValue.json(recorded)})


def _declare(context: OpExecutionContext, config: DeclareConfig, migration: MigrationResource, name: str):
    with migration.connection() as conn:
        try:
            now = phase.declare(
                conn, name, by=config.declared_by or None, run_id=context.run_id, note=config.note
            )
        except phase.PhaseError as err:
            raise Failure(description=str(err)) from err
    _record(context, now)


@op(
    description="Record that the app writes to PostgreSQL from now on (it was migrated with the app stopped)."
)
def declare_switch_op(context: OpExecutionContext, config: DeclareConfig, migration: MigrationResource):
    _declare(context, config, migration, phase.SWITCHED)


@job(
    name="declare_switch",
    description=(
        "Record that the app now writes to PostgreSQL (the seed's phase 5: stop the app, migrate, verify, "
        "point the app at PostgreSQL, then run this). From then on the change log explains the app's "
        "writes; before it, any change in PostgreSQL fails the checks. The cutover job declares it itself."
    ),
)
def declare_switch():
    declare_switch_op()


@op(description="Record that the app is back on SQLite: PostgreSQL's changes since are unexplained again.")
def withdraw_switch_op(context: OpExecutionContext, config: DeclareConfig, migration: MigrationResource):
    _declare(context, config, migration, phase.MIGRATED)


@job(
    name="withdraw_switch",
    description=(
        "Record that the app fell back to SQLite. The app's writes to PostgreSQL since the switch then "
        "fail the checks until the tables are migrated again (loads and syncs are allowed again)."
    ),
)
def withdraw_switch():
    withdraw_switch_op()


@op(description="Record the final proof baseline, remove the change log, declare the database finalized.")
def finalize_op(context: OpExecutionContext, config: DeclareConfig, migration: MigrationResource):
    _rebase(context, config, migration, finalize.finalize, "final_baselines")


@job(
    name="finalize",
    description=(
        "End the soak period: the proof must be green; each table's content is recorded as its final "
        "baseline (checksums computed from PostgreSQL), the change-log triggers are removed (the app's "
        "writes then cost nothing) and reverify proves structure, integrity, conformance and the app's "
        "queries from then on. Reversible with resume_change_log."
    ),
)
def finalize_job():
    finalize_op()


@op(description="Record the content as the new baseline and put the change log back (phase switched).")
def resume_change_log_op(context: OpExecutionContext, config: DeclareConfig, migration: MigrationResource):
    _rebase(context, config, migration, finalize.resume, "baselines")


@job(
    name="resume_change_log",
    description=(
        "Undo finalize: the tables' content now becomes the baseline and the change log follows the app's "
        "writes again, so content_parity and rows_conserved are exact again from here."
    ),
)
def resume_change_log():
    resume_change_log_op()


@op(
    description="Reduce the app's logged writes to their net effect per key (the checks' sums are unchanged)."
)
def compact_change_log_op(context: OpExecutionContext, migration: MigrationResource) -> None:
    with migration.connection() as conn:
        removed = {name: changes.compact(conn, name) for name in load_catalog().names}
        remaining = changes.size(conn)
    context.log.info(
        f"change log compacted: {sum(removed.values()):,} entries removed, {sum(remaining.values()):,} remain"
    )


@job(
    name="compact_change_log",
    description="Keep the change log small while the app writes to PostgreSQL: net effect per key.",
)
def compact_change_log():
    compact_change_log_op()


def compaction_schedule(env: Mapping[str, str] | None = None) -> ScheduleDefinition:
    """Hourly by default (COMPACT_CRON); COMPACT_SCHEDULE=off starts it stopped."""
    return setting_schedule(
        "compact_change_log_hourly", compact_change_log, "COMPACT", COMPACT_CRON,
        "Compacts the change log (a no-op before the switch and after finalize: nothing to compact).", env,
    )  # fmt: skip
