"""The contract's headless commands, run as an operator would: subprocesses on a generated database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

from migration_pipeline.connect.target import connect
from migration_pipeline.prove import proof
from migration_pipeline.samples.sample_data import generate

from .helpers import editable_copy, fingerprint, migrate, silently, sqlite_exec
from .test_source import damage

CHECKOUT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PG_", "SQLITE_"))}
    return subprocess.run(
        [sys.executable, "-m", "dagster", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _counts(server, database, tables) -> dict[str, int]:
    with psycopg.connect(**{**server, "dbname": database}) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


def test_headless_materialize_then_reverify_against_a_configured_server(server, database, catalog, tmp_path):
    """PG_* variables name the server (here the embedded one over TCP with its password, standing in
    for an external server): every table populated, exit 0, the password in no output."""
    source = generate(tmp_path / "app.db", users=200, tweets=2_000, with_queue=True)
    env = {
        "SQLITE_PATH": str(source),
        "PG_HOST": server["host"],
        "PG_PORT": server["port"],
        "PG_USER": server["user"],
        "PG_PASSWORD": server["password"],
        "PG_DATABASE": database,
    }
    done = _run(
        ["asset", "materialize", "-m", "migration_pipeline.definitions", "--select", "*"], env, tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert server["password"] not in done.stdout + done.stderr
    counts = _counts(server, database, catalog.names)
    assert all(n > 0 for n in counts.values()), counts
    verify = _run(["job", "execute", "-m", "migration_pipeline.definitions", "-j", "reverify"], env, tmp_path)
    assert verify.returncode == 0, verify.stderr[-3000:]
    assert "rows_conserved" in verify.stderr + verify.stdout
    assert server["password"] not in verify.stdout + verify.stderr


def test_headless_defaults_generate_a_sample_into_the_embedded_server(server, database, catalog, tmp_path):
    missing = tmp_path / "data" / "twitter.db"
    done = _run(
        ["asset", "materialize", "-m", "migration_pipeline.definitions", "--select", "*"],
        {"SQLITE_PATH": str(missing), "PG_DATABASE": database},
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert missing.exists()
    counts = _counts(server, database, catalog.names)
    assert counts["users"] > 0 and counts["tweets"] > 0
    assert counts["analysis_queue"] == 0  # the app never creates the queue tables in SQLite


def test_reverify_fails_when_a_row_goes_missing(server, database, settings, catalog, sample_db, tmp_path):
    with connect(settings) as conn:
        migrate(conn, catalog, sample_db, "run-1", tmp_path)
        silently(conn, "DELETE FROM tweets WHERE id = (SELECT min(id) FROM tweets)")
    verify = _run(
        ["job", "execute", "-m", "migration_pipeline.definitions", "-j", "reverify"],
        {"SQLITE_PATH": str(sample_db), "PG_DATABASE": database},
        tmp_path,
    )
    assert verify.returncode != 0
    assert "the table holds" in verify.stdout + verify.stderr


def test_killed_loader_leaves_the_previous_content(database, settings, catalog, sample_db, tmp_path):
    with connect(settings) as conn:
        migrate(conn, catalog, sample_db, "run-1", tmp_path)
        before = fingerprint(conn, "tweets")
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from migration_pipeline.catalog import load_catalog
        from migration_pipeline.move.load import load_table
        from migration_pipeline.connect.settings import Settings
        from migration_pipeline.move.source import Snapshot
        from migration_pipeline.connect.target import connect

        def stall(rows):
            print("copying", flush=True)
            time.sleep(60)

        settings = Settings(Path("unused"), {database!r})
        with connect(settings) as conn, Snapshot(Path({str(tmp_path / "run-1.snapshot.db")!r})) as snap:
            load_table(conn, snap, load_catalog(), "tweets", "run-killed", progress=stall)
        """
    )
    loader = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=CHECKOUT)
    assert loader.stdout.readline().strip() == "copying"
    loader.send_signal(signal.SIGKILL)
    loader.wait(timeout=30)
    with connect(settings) as conn:
        assert fingerprint(conn, "tweets") == before
        assert not conn.execute(
            "SELECT 1 FROM migration_audit.table_loads WHERE run_id = 'run-killed'"
        ).fetchall()


def test_reverify_fails_on_a_plain_update_before_the_switch(
    server, database, settings, catalog, sample_db, tmp_path
):
    """An operator's ordinary UPDATE (no trigger tricks) fails reverify, named; declaring the switch
    afterwards does not make it the app's."""
    env = {"SQLITE_PATH": str(sample_db), "PG_DATABASE": database}
    with connect(settings) as conn:
        migrate(conn, catalog, sample_db, "run-1", tmp_path)
    with psycopg.connect(**{**server, "dbname": database}, application_name="psql", autocommit=True) as op:
        op.execute(
            "UPDATE tweets SET created_at = created_at + interval '1 second'"
            " WHERE id = (SELECT min(id) FROM tweets)"
        )
    verify = _run(["job", "execute", "-m", "migration_pipeline.definitions", "-j", "reverify"], env, tmp_path)
    out = verify.stdout + verify.stderr
    assert verify.returncode != 0
    assert "tweets: 1 row(s) changed by UPDATE" in out and "application_name 'psql'" in out
    config = tmp_path / "declare.yaml"
    config.write_text("ops: {declare_switch_op: {config: {declared_by: ops-oncall, note: CHG-42}}}\n")
    declared = _run(
        [
            "job",
            "execute",
            "-m",
            "migration_pipeline.definitions",
            "-j",
            "declare_switch",
            "--config",
            str(config),
        ],
        env,
        tmp_path,
    )
    assert declared.returncode == 0, declared.stderr[-3000:]
    with connect(settings) as conn:
        assert conn.execute(
            "SELECT phase, declared_by, note FROM migration_audit.phases ORDER BY id DESC LIMIT 1"
        ).fetchone() == ("switched", "ops-oncall", "CHG-42")
        tweets = {o.name: o for o in proof.run(conn, catalog, "tweets", None, {"content_parity"})}
        assert not tweets["content_parity"].passed
        assert "made before the switch was declared" in tweets["content_parity"].description


def _fingerprints(server, database, tables) -> dict:
    with psycopg.connect(**{**server, "dbname": database}) as conn:
        return {
            **{t: fingerprint(conn, t) for t in tables},
            "table_loads": conn.execute("SELECT count(*) FROM migration_audit.table_loads").fetchone()[0],
        }


def test_a_wrong_source_is_refused_and_the_target_untouched(
    server, database, settings, catalog, sample_db, tmp_path
):
    """After a good migration, a damaged file, an empty file, a file without `users` and a source holding
    1% of the tweets each make the headless run exit 1 with the reason on one line, every table as it was; confirming the
    shrink (ALLOW_SHRINK) lets the 1% load, recorded in the audit trail."""
    with connect(settings) as conn:
        migrate(conn, catalog, sample_db, "run-1", tmp_path)
        tweets_before = conn.execute("SELECT count(*) FROM tweets").fetchone()[0]
    before = _fingerprints(server, database, catalog.names)
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    no_users = editable_copy(sample_db, tmp_path / "no-users.db")
    sqlite_exec(no_users, "DROP TABLE users")
    one_percent = editable_copy(sample_db, tmp_path / "one-percent.db")
    sqlite_exec(one_percent, "DELETE FROM tweets WHERE rowid % 100 <> 0")
    damaged = editable_copy(sample_db, tmp_path / "damaged.db")
    damage(damaged, "tweets")
    materialize = ["asset", "materialize", "-m", "migration_pipeline.definitions", "--select", "*"]
    reasons = {
        damaged: "the file is damaged (database disk image is malformed:",
        empty: "lacks the app's table(s) users, tweets",
        no_users: "lacks the app's table(s) users (it has only: analysis_chunks",
        one_percent: "rows of tweets (99%)",
    }
    for source, reason in reasons.items():
        done = _run(materialize, {"SQLITE_PATH": str(source), "PG_DATABASE": database}, tmp_path)
        output = done.stdout + done.stderr
        assert done.returncode == 1, output[-3000:]
        [line] = [x for x in output.splitlines() if reason in x and x.startswith("migration_pipeline.")][:1]
        assert str(source.resolve()) in line and ("ALLOW_SHRINK=tweets" in line or "SQLITE_PATH" in line), (
            line
        )
        assert _fingerprints(server, database, catalog.names) == before, source
    in_process = ["--config-json", '{"execution": {"config": {"in_process": {}}}}']  # one process: quicker
    confirmed = _run(
        materialize + in_process,
        {"SQLITE_PATH": str(one_percent), "PG_DATABASE": database, "ALLOW_SHRINK": "tweets"},
        tmp_path,
    )
    assert confirmed.returncode == 0, confirmed.stderr[-3000:]
    with psycopg.connect(**{**server, "dbname": database}) as conn:
        loaded, removed, confirmation = conn.execute(
            "SELECT loaded_rows, removed_rows, shrink_confirmed FROM migration_audit.table_loads"
            " WHERE table_name = 'tweets' ORDER BY finished_at DESC LIMIT 1"
        ).fetchone()
        assert conn.execute("SELECT count(*) FROM tweets").fetchone()[0] == loaded <= 30
    assert removed == tweets_before - loaded
    assert confirmation["confirmed_by"] == ["ALLOW_SHRINK"]
    assert confirmation["tables"]["tweets"] == {"before": tweets_before, "removed": removed, "via": None}
