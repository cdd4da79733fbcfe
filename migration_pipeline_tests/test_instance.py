"""The Dagster instance of every entry point keeps its runs and events in PostgreSQL, on the migration's
server, found without a port or password written down."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from dagster import DagsterInstance, job, op
from psycopg import sql

from migration_pipeline.connect.instance import DAGSTER_HOME, instance_env
from migration_pipeline.connect.settings import load_settings


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
        assert env == {"DAGSTER_HOME": str(DAGSTER_HOME), "DAGSTER_PG_DB": database}
        assert server["password"] not in (DAGSTER_HOME / "dagster.yaml").read_text()
        assert server["port"] not in (DAGSTER_HOME / "dagster.yaml").read_text()
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        with DagsterInstance.from_config(str(DAGSTER_HOME)) as instance:
            result = tiny.execute_in_process(instance=instance)
            assert result.success
            assert instance.get_run_by_id(result.run_id).is_success
            assert server["password"] not in repr(instance.get_ref())  # what step processes are sent
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


def test_a_configured_server_holds_the_instance_with_its_own_credentials(server, tmp_path, monkeypatch):
    """An external server by configuration (PG_HOST/PG_PORT/PG_USER/PG_PASSWORD, as in .env.migration):
    here a separate login role with its own password on the test server, which the embedded defaults
    know nothing about."""
    role, password = f"ops_{uuid.uuid4().hex[:8]}", "Ext-" + uuid.uuid4().hex
    database = f"test_instance_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(**server, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(sql.Identifier(role), password)
        )
    env_file = tmp_path / ".env.migration"
    env_file.write_text(
        f"PG_HOST=127.0.0.1\nPG_PORT={server['port']}\nPG_USER={role}\nPG_PASSWORD={password}\n"
        f"PG_DATABASE=twitter_analysis_db\nDAGSTER_PG_DB={database}\n"
    )
    for key in ("PG_DSN", "PG_HOST", "PG_PORT", "PG_USER", "PG_PASSWORD", "PG_DATABASE", "DAGSTER_PG_DB"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    try:
        settings = load_settings()
        assert not settings.embedded and password not in settings.describe()
        env = instance_env(settings)
        assert env["DAGSTER_PG_DB"] == database and password not in repr(env)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        with DagsterInstance.from_config(str(DAGSTER_HOME)) as instance:
            result = tiny.execute_in_process(instance=instance)
            assert instance.get_run_by_id(result.run_id).is_success
        with psycopg.connect(**{**server, "dbname": database}) as conn:
            owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'runs'").fetchone()[0]
            assert owner == role  # created through the configured credentials, not the embedded superuser
            assert (
                conn.execute("SELECT count(*) FROM runs WHERE run_id = %s", (result.run_id,)).fetchone()[0]
                == 1
            )
    finally:
        with psycopg.connect(**server, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_a_server_that_refuses_the_instance_database_still_runs(server, tmp_path, monkeypatch):
    """A role without CREATEDB: the history goes to SQLite under the state directory, with a warning,
    instead of the migration failing to start."""
    role, password = f"ops_{uuid.uuid4().hex[:8]}", "Ext-" + uuid.uuid4().hex
    with psycopg.connect(**server, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN NOCREATEDB PASSWORD {}").format(sql.Identifier(role), password)
        )
    for key in ("PG_DSN", "PG_DATABASE", "DAGSTER_PG_DB"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PG_HOST", "127.0.0.1")
    monkeypatch.setenv("PG_PORT", server["port"])
    monkeypatch.setenv("PG_USER", role)
    monkeypatch.setenv("PG_PASSWORD", password)
    monkeypatch.setenv("DAGSTER_PG_DB", f"refused_{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("MIGRATION_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    try:
        with (
            pytest.warns(UserWarning, match="Dagster instance kept in .*SQLite"),
            DagsterInstance.from_config(str(DAGSTER_HOME)) as instance,
        ):
            result = tiny.execute_in_process(instance=instance)
            assert instance.get_run_by_id(result.run_id).is_success
        assert (tmp_path / "state" / "dagster").is_dir()
    finally:
        with psycopg.connect(**server, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
