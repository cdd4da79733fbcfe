"""``migration-pipeline``: every command answers --help; a migration started from it is a Dagster run in
the shared PostgreSQL-backed instance, which the UI's GraphQL then lists with its materializations and
check results; quarantined rows are listed and exported; the server prints a usable connection string."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import click
import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from migration_pipeline.cli import app
from migration_pipeline.connect.instance import instance_env
from migration_pipeline.connect.target import connect

from .helpers import editable_copy, migrate
from .test_browser import dagster_dev, graphql

CLI = Path(sys.executable).with_name("migration-pipeline")
pytestmark = pytest.mark.slow


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


def test_every_command_has_help():
    assert subprocess.run([str(CLI), "--help"], capture_output=True, text=True, timeout=120).returncode == 0
    runner = CliRunner()
    names = list(_commands(app))
    assert {"migrate", "verify", "sync", "cutover", "finalize", "rollback", "report", "provenance"} <= {
        n[0] for n in names
    }
    assert ("quarantine", "export") in names and ("server", "status") in names
    for name in names:
        done = runner.invoke(app, [*name, "--help"])
        assert done.exit_code == 0, (name, done.output)
        assert "Usage:" in done.output


def _env(**extra) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PG_", "SQLITE_", "DAGSTER_"))}
    return {**clean, **dict.fromkeys(("PG_DSN", "PG_HOST", "PG_PORT", "PG_USER", "PG_PASSWORD"), ""), **extra}


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


CHECKS = """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
  assetMaterializations(limit: 1) { runId
    metadataEntries { label ... on MarkdownMetadataEntry { mdStr } ... on IntMetadataEntry { intValue } } }
  assetChecksOrError { ... on AssetChecks { checks { name
    executionForLatestMaterialization { runId status } } } } } } }"""


def test_a_cli_migration_is_in_the_uis_history(server, settings, catalog, sample_db, tmp_path):
    instance_db = f"test_cli_{uuid.uuid4().hex[:8]}"
    source = editable_copy(sample_db, tmp_path / "app.db")
    env = _env(SQLITE_PATH=str(source), PG_DATABASE=settings.database, DAGSTER_PG_DB=instance_db)
    try:
        done = _cli(["migrate"], env, tmp_path)
        out = done.stdout + done.stderr
        assert done.returncode == 0, out[-3000:]
        assert server["password"] not in out
        summary = done.stdout.splitlines()
        run_id = next(line for line in summary if "succeeded (run" in line).split("(run ")[1].rstrip(")")
        assert any(line.startswith("tables: 10 loaded") and "quarantined" in line for line in summary), (
            summary
        )
        assert any(line.startswith("checks: ") and "0 failed" in line for line in summary), summary
        assert any(line.startswith("verification report: ") for line in summary), summary
        assert "DEBUG" not in done.stdout  # Dagster's log lines go to the run's log file, not the terminal
        with connect(settings) as conn:
            quarantined = dict(
                conn.execute(
                    "SELECT table_name, rejected_rows FROM migration_audit.table_loads WHERE run_id = %s",
                    (run_id,),
                ).fetchall()
            )
        assert quarantined["tweets"] > 20  # the preview shows the first 20

        # a sync says per table what it did, warns of a newly quarantined row, runs the changed tables' checks
        with connect(settings) as conn:  # a user that loaded
            (user,) = conn.execute("SELECT id FROM users ORDER BY id LIMIT 1").fetchone()
        with sqlite3.connect(source) as db:
            for key, created in (("new-1", "2024-01-01 10:00:00"), ("bad-1", "someday")):
                db.execute(
                    "INSERT INTO tweets (id, user_id, text, created_at) VALUES (?, ?, 'x', ?)",
                    (key, user, created),
                )
        db.close()
        synced = _cli(["sync"], env, tmp_path)
        assert synced.returncode == 0, (synced.stdout + synced.stderr)[-3000:]
        lines = synced.stdout.splitlines()
        assert "sync: 1 table(s) changed" in lines, lines
        sync_run = next(line for line in lines if "succeeded (run" in line).split("(run ")[1].rstrip(")")
        assert "  tweets: 1 inserted, 0 updated, 0 deleted, WARNING 1 newly quarantined" in lines, lines
        assert "  warned: postgres/tweets:quarantine" in lines and any(
            line.startswith("verification report: ") for line in lines
        ), lines

        ui_env = {**env, **instance_env(settings, instance_db)}
        with dagster_dev(ui_env, tmp_path / "dagster-dev.log") as (base, _):
            for table in catalog.names:
                node = graphql(base, CHECKS, {"key": {"path": ["postgres", table]}})["assetNodeOrError"]
                (materialization,) = node["assetMaterializations"]
                latest = sync_run if table == "tweets" else run_id  # the sync changed tweets only
                assert materialization["runId"] == latest, table
                entries = {e["label"]: e for e in materialization["metadataEntries"]}
                total = entries["quarantined_rows"]["intValue"]
                preview = entries["quarantine_preview"]["mdStr"]
                assert total == quarantined[table] + (table == "tweets"), table  # + bad-1
                if total:  # the table's page shows its quarantined rows: key, column, value, reason, raw row
                    assert f"{total:,} quarantined rows" in preview
                    assert preview.count("\n| `") == min(total, 20), preview
                else:
                    assert preview == "No quarantined rows."
                checks = node["assetChecksOrError"]["checks"]
                assert checks, table
                for check in checks:
                    execution = check["executionForLatestMaterialization"]
                    assert execution["runId"] == latest, (table, check)
                    assert execution["status"] in ("SUCCEEDED", "FAILED"), (table, check)
    finally:
        with psycopg.connect(**server, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(instance_db))
            )


def test_quarantine_list_and_export(server, settings, catalog, sample_db, tmp_path):
    with connect(settings) as conn:
        results = migrate(conn, catalog, sample_db, "cli-test", tmp_path)
    quarantined = {table: r.rejected_rows for table, r in results.items()}
    assert quarantined["tweets"] > 0
    env = _env(SQLITE_PATH=str(sample_db), PG_DATABASE=settings.database)

    listed = _cli(["quarantine", "list", "tweets", "--limit", "3"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert f"tweets: {quarantined['tweets']:,} quarantined" in listed.stdout
    assert len([line for line in listed.stdout.splitlines() if line.startswith("  ")]) == 4  # 3 rows + "more"

    csv_out, jsonl_out = tmp_path / "q.csv", tmp_path / "q.jsonl"
    assert _cli(["quarantine", "export", "--out", str(csv_out)], env, tmp_path).returncode == 0
    assert _cli(["quarantine", "export", "--out", str(jsonl_out)], env, tmp_path).returncode == 0
    with csv_out.open(newline="") as file:
        rows = list(csv.DictReader(file))
    lines = [json.loads(line) for line in jsonl_out.read_text().splitlines()]
    assert len(rows) == len(lines) == sum(quarantined.values())
    for row, line in zip(rows, lines, strict=True):
        assert json.loads(row["raw_row"]) == line["raw_row"] and row["reason"] == line["reason"]
        assert line["column_name"] is None or line["value"] == line["raw_row"].get(line["column_name"])

    acked = _cli(["quarantine", "ack"], env, tmp_path)
    assert acked.returncode == 0 and f"acknowledged {sum(quarantined.values()):,} rows" in acked.stdout
    assert "acknowledged 0 rows" in _cli(["quarantine", "ack"], env, tmp_path).stdout  # once is enough


def test_server_status_prints_a_connection_string_that_works(server, settings, tmp_path):
    env = _env(PG_DATABASE=settings.database)
    done = _cli(["server", "status"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert server["password"] not in done.stdout and ":***@" in done.stdout
    shown = _cli(["server", "status", "--show-password"], env, tmp_path)
    uri = next(line for line in shown.stdout.splitlines() if line.startswith("connection string: "))
    with psycopg.connect(uri.removeprefix("connection string: ")) as conn:
        assert conn.info.dbname == settings.database
    psql = _cli(["server", "psql", "-At", "-c", "SELECT current_database()"], env, tmp_path)
    assert psql.returncode == 0 and psql.stdout.strip() == settings.database, psql.stderr


def test_a_target_nothing_was_migrated_into_gets_a_clear_error(server, settings, tmp_path):
    env = _env(PG_DATABASE=settings.database)  # an empty database: no migration_audit yet
    for args in (["quarantine", "list"], ["quarantine", "corrections"], ["provenance"]):
        done = _cli(args, env, tmp_path)
        assert done.returncode == 3, (args, done.stderr[-2000:])
        assert "the target has no migration yet" in done.stderr and "Traceback" not in done.stderr, args
