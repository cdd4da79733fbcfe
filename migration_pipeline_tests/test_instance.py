"""The Dagster instance of `make ui` keeps its runs and events in PostgreSQL."""

from __future__ import annotations

import uuid

import psycopg
from dagster import DagsterInstance, job, op
from psycopg import sql

from migration_pipeline.instance import DAGSTER_HOME, instance_env


@op
def hello() -> int:
    return 1


@job
def tiny():
    hello()


def test_runs_and_events_are_stored_in_postgres(server, settings, monkeypatch):
    database = f"test_instance_{uuid.uuid4().hex[:8]}"
    env = instance_env(settings, database)
    try:
        assert env["DAGSTER_PG_PORT"] == server["port"] and env["DAGSTER_PG_DB"] == database
        assert (DAGSTER_HOME / "dagster.yaml").is_file()
        assert server["password"] not in (DAGSTER_HOME / "dagster.yaml").read_text()
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        with DagsterInstance.from_config(str(DAGSTER_HOME)) as instance:
            result = tiny.execute_in_process(instance=instance)
            assert result.success
            assert instance.get_run_by_id(result.run_id).is_success
        with psycopg.connect(**{**server, "dbname": database}) as conn:
            assert (
                conn.execute("SELECT count(*) FROM runs WHERE run_id = %s", (result.run_id,)).fetchone()[0]
                == 1
            )
            assert (
                conn.execute(
                    "SELECT count(*) FROM event_logs WHERE run_id = %s", (result.run_id,)
                ).fetchone()[0]
                > 3
            )
    finally:
        with psycopg.connect(**server, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
