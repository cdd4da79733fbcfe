"""The Dagster wiring in process: the same Definitions, resources pointed at a test database."""

from __future__ import annotations

from dagster import DagsterInstance, DefaultScheduleStatus, build_schedule_context

from migration_pipeline import definitions
from migration_pipeline.defs.resources import MigrationResource
from migration_pipeline.defs.schedules import reverify_schedule


def _defs(database, source):
    from dagster import Definitions

    base = definitions.defs
    return Definitions(
        assets=list(base.assets),
        asset_checks=list(base.asset_checks),
        jobs=list(base.jobs),
        schedules=list(base.schedules),
        resources={"migration": MigrationResource(sqlite_path=str(source), pg_database=database)},
    )


def test_migrate_then_reverify_in_process(database, sample_db, catalog):
    defs = _defs(database, sample_db)
    instance = DagsterInstance.ephemeral()
    migrated = defs.resolve_job_def("migrate").execute_in_process(instance=instance, raise_on_error=False)
    assert migrated.success
    evaluations = migrated.get_asset_check_evaluations()
    by_check = {(e.asset_key.path[-1], e.check_name): e.passed for e in evaluations}
    assert len({t for t, _ in by_check}) == len(catalog.names)
    assert by_check[("tweets", "content_parity")] and by_check[("tweets", "jsonb_fidelity")]
    assert not by_check[("tweets", "quarantine")]  # a warning, not a failure of the run
    report = [
        e
        for e in migrated.all_events
        if e.is_step_materialization and e.asset_key.path == ["audit", "verification_report"]
    ]
    assert report and report[0].materialization.metadata["verdict"].value == "passed"

    verified = defs.resolve_job_def("reverify").execute_in_process(instance=instance, raise_on_error=False)
    assert verified.success
    assert not verified.get_asset_materialization_events()  # checks only: no data moved
    assert len(verified.get_asset_check_evaluations()) == len(evaluations)


def test_schedule_defaults_and_configuration():
    schedule = reverify_schedule({})
    assert schedule.cron_schedule == "0 3 * * *" and schedule.job_name == "reverify"
    assert schedule.default_status == DefaultScheduleStatus.RUNNING
    custom = reverify_schedule({"REVERIFY_CRON": "*/30 * * * *", "REVERIFY_SCHEDULE": "off"})
    assert custom.cron_schedule == "*/30 * * * *" and custom.default_status == DefaultScheduleStatus.STOPPED
    requests = schedule.evaluate_tick(build_schedule_context()).run_requests
    assert len(requests) == 1
