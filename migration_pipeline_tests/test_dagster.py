"""The Dagster wiring in process: the same Definitions, resources pointed at a test database."""

from __future__ import annotations

import sqlite3

from dagster import DagsterInstance, DefaultScheduleStatus, build_schedule_context

from migration_pipeline import definitions
from migration_pipeline.defs.connect import MigrationResource
from migration_pipeline.defs.prove import reverify_schedule
from migration_pipeline.prove import checks


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
    [origin] = [e.materialization for e in migrated.get_asset_materialization_events()
                if e.materialization.asset_key.path == ["audit", "provenance"]]  # fmt: skip
    assert origin.metadata["tables"].value["tweets"]["run_id"] == migrated.run_id
    assert (
        "## tweets" in origin.metadata["report"].value and not origin.metadata["loaded_by_older_code"].value
    )
    tweets = next(
        e.materialization
        for e in migrated.get_asset_materialization_events()
        if e.materialization.asset_key.path == ["postgres", "tweets"]
    )
    observations = [e.asset_observation_data.asset_observation for e in migrated.all_events
                    if e.event_type_value == "ASSET_OBSERVATION"]  # fmt: skip
    observed = {o.asset_key.path[-1]: o for o in observations}
    assert set(observed) == set(catalog.names)
    assert observed["tweets"].metadata["dagster/row_count"].value == 3_000
    assert all(o.metadata["present"].value for o in observations)  # the sample has the queue tables too
    assert tweets.metadata["run_id"].value == migrated.run_id
    assert (
        tweets.metadata["code_version"].value == defs.resolve_asset_graph().get(tweets.asset_key).code_version
    )
    assert migrated.run_id in tweets.metadata["table_load_sql"].value
    assert migrated.run_id in tweets.metadata["quarantine_sql"].value
    lineage = tweets.metadata["dagster/column_lineage"].value.deps_by_column
    assert lineage["created_at"][0].asset_key.path == ["sqlite", "tweets"] and len(lineage) == 8
    node = defs.resolve_asset_graph().get(tweets.asset_key)
    assert node.code_version and node.owners == ["team:migration"]
    columns = {c.name: c for c in node.metadata["dagster/column_schema"].columns}
    assert columns["is_reply"].type == "boolean" and "0/1" in columns["is_reply"].description
    assert columns["id"].type == "varchar(255)" and columns["id"].constraints.unique
    assert not columns["text"].constraints.nullable and "jsonb" in columns["metadata"].description

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


def test_monitor_sensor_skips_when_quiet_and_alerts_once(database, sample_db, monkeypatch):
    from dagster import SensorResult, build_sensor_context

    from migration_pipeline.defs.watch import postgres_monitor

    resources = {"migration": MigrationResource(sqlite_path=str(sample_db), pg_database=database)}
    instance = DagsterInstance.ephemeral()

    def tick(cursor=None):
        with build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
            return postgres_monitor(context)

    quiet = tick()
    assert isinstance(quiet, SensorResult) and not quiet.run_requests
    assert "all thresholds respected" in quiet.skip_reason.skip_message
    assert quiet.asset_events[0].asset_key.path == ["monitoring", "postgres_health"]

    monkeypatch.setenv("MONITOR_POOL_UTILIZATION", "0.0001")
    alerted = tick(quiet.cursor)
    assert [r.tags["alert/kind"] for r in alerted.run_requests] == ["connections"]
    config = alerted.run_requests[0].run_config["ops"]["raise_alert"]["config"]
    assert "connections in use" in config["message"]
    again = tick(alerted.cursor)
    assert not again.run_requests and "1 still open: connections:server" in again.skip_reason.skip_message


def test_alert_job_fails_visibly_with_the_numbers():
    from migration_pipeline.defs.watch import postgres_alert

    result = postgres_alert.execute_in_process(
        run_config={"ops": {"raise_alert": {"config": {
            "kind": "slow_query", "subject": "42", "message": "mean 900 ms >= 500 ms: SELECT pg_sleep($1)",
            "numbers": '{"mean_ms": 900}'}}}},
        raise_on_error=False,
    )  # fmt: skip
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert "SELECT pg_sleep($1)" in failure.description and failure.metadata["numbers"].value == {
        "mean_ms": 900
    }


def test_sync_cutover_and_rollback_jobs(database, sample_db, catalog, tmp_path):
    from migration_pipeline.samples.app_writer import write

    source = tmp_path / "app.db"
    source.write_bytes(sample_db.read_bytes())
    defs = _defs(database, source)
    instance = DagsterInstance.ephemeral()
    assert defs.resolve_job_def("migrate").execute_in_process(instance=instance).success
    write(source, changes=200)
    with sqlite3.connect(source) as db:  # and one new tweet the value rules refuse
        user = db.execute("SELECT id FROM users WHERE username IS NOT NULL LIMIT 1").fetchone()[0]
        db.execute(
            "INSERT INTO tweets (id, user_id, text, created_at) VALUES ('bad-1', ?, 'x', 'someday')", (user,)
        )
    db.close()

    synced = defs.resolve_job_def("sync").execute_in_process(instance=instance)
    assert synced.success
    tweets = [m.materialization for m in synced.get_asset_materialization_events()
              if m.materialization.asset_key.path == ["postgres", "tweets"]]  # fmt: skip
    assert tweets and tweets[0].metadata["mode"].value == "delta"
    assert tweets[0].metadata["source_rows_added"].value > 0
    newly = tweets[0].metadata["newly_quarantined"].value  # bad-1, and what the app writer's changes broke
    assert newly >= 1
    # the sync evaluates every check of the tables it changed, and refreshes both reports
    evaluated = {(e.asset_key.path[-1], e.check_name): e for e in synced.get_asset_check_evaluations()}
    tweet_checks = {c.name for c in checks.CHECKS if c.applies_to(catalog.table("tweets"))}
    assert {name for table, name in evaluated if table == "tweets"} == tweet_checks
    assert all(e.passed for (t, n), e in evaluated.items() if n != "quarantine")
    quarantine = evaluated[("tweets", "quarantine")]
    assert not quarantine.passed and quarantine.metadata["new_rows"].value == newly
    assert "bad-1" in {r["source_key"] for r in quarantine.metadata["new_examples"].value}
    reports = {m.materialization.asset_key.path[-1] for m in synced.get_asset_materialization_events()}
    assert {"verification_report", "provenance"} <= reports

    write(source, changes=50, seed=8)
    config = {"ops": {"catch_up": {"config": {"small_rows": 0, "max_rounds": 2}},
                      "wait_for_freeze": {"config": {"writes_stopped": True}}}}  # fmt: skip
    cut = defs.resolve_job_def("cutover").execute_in_process(instance=instance, run_config=config)
    assert cut.success
    from migration_pipeline.connect.settings import Settings
    from migration_pipeline.connect.target import connect

    with connect(Settings(source, database)) as conn:
        state, verified = conn.execute(
            "SELECT state, verified FROM migration_audit.cutovers WHERE run_id = %s", (cut.run_id,)
        ).fetchone()
    assert verified and state.startswith("verified")
    out = tmp_path / "rollback.db"
    rolled = defs.resolve_job_def("rollback_export").execute_in_process(
        instance=instance, run_config={"ops": {"export_to_sqlite": {"config": {"out": str(out)}}}}
    )
    assert rolled.success and out.is_file()
    refused = defs.resolve_job_def("rollback_export").execute_in_process(
        instance=instance,
        run_config={"ops": {"export_to_sqlite": {"config": {"out": str(source)}}}},
        raise_on_error=False,
    )
    assert not refused.success  # never the app's own file


def test_phase_jobs_record_the_switch_finalize_and_withdrawal(database, sample_db, catalog, settings):
    from migration_pipeline.connect.target import connect
    from migration_pipeline.move import changes, phase

    defs = _defs(database, sample_db)
    instance = DagsterInstance.ephemeral()
    assert defs.resolve_job_def("migrate").execute_in_process(instance=instance).success

    def run(job: str, **config):
        op = f"{job}_op" if job != "finalize" else "finalize_op"
        run_config = {"ops": {op: {"config": config}}} if config else None
        return defs.resolve_job_def(job).execute_in_process(
            instance=instance, run_config=run_config, raise_on_error=False
        )

    finalize_too_early = run("finalize")
    assert not finalize_too_early.success  # finalize follows the switch
    declared = run("declare_switch", declared_by="ops-oncall", note="CHG-7")
    assert declared.success
    [event] = [e.materialization for e in declared.get_asset_materialization_events()]
    assert event.asset_key.path == ["audit", "phase"] and event.metadata["phase"].value == "switched"
    assert event.metadata["declared_by"].value == "ops-oncall"
    assert defs.resolve_job_def("compact_change_log").execute_in_process(instance=instance).success
    finalized = run("finalize", note="soak ended")
    assert finalized.success
    with connect(settings) as conn:
        assert phase.current(conn).name == phase.FINALIZED
        assert not changes.installed(conn, "tweets")
    assert run("resume_change_log").success
    assert run("withdraw_switch", note="fell back to SQLite").success
    with connect(settings) as conn:
        assert [r["phase"] for r in phase.history(conn)] == ["migrated", "switched", "finalized", "switched"]
        assert changes.installed(conn, "tweets")
    reverify = defs.resolve_job_def("reverify").execute_in_process(instance=instance, raise_on_error=False)
    assert reverify.success  # nothing was written in between: the proof holds in every phase
