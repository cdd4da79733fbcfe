"""After the switch (declared): the app writes to PostgreSQL, and the checks follow it exactly (the change log)."""

from __future__ import annotations

from migration_pipeline.move import phase
from migration_pipeline.move.load import load_table
from migration_pipeline.move.source import Snapshot
from migration_pipeline.prove import behaviour, proof

from .helpers import migrate, silently

APP_WRITES = [
    "INSERT INTO users (id, username, profile_data) VALUES ('u_live', 'live_user', '{\"bio\": \"new\"}')",
    "INSERT INTO tweets (id, user_id, text, created_at, metadata) SELECT 'live' || g, 'u_live', 'hello world', now(),"
    " '{\"likes\": 0}' FROM generate_series(1, 5) g",
    "UPDATE tweets SET text = text || ' (edited)', metadata = '{\"edited\": true}' WHERE id IN"
    " (SELECT id FROM tweets WHERE user_id <> 'u_live' ORDER BY id LIMIT 3)",
    "DELETE FROM tweets WHERE id IN (SELECT id FROM tweets WHERE user_id <> 'u_live' ORDER BY id DESC LIMIT 2)",
    "UPDATE users SET username = username || '_renamed' WHERE id = (SELECT min(id) FROM users WHERE id <> 'u_live')",
    "INSERT INTO referral_usage_log (referral_code, used_by_user_id) SELECT code, 'u_live' FROM referral_codes LIMIT 1",
    "UPDATE analysis_queue SET status = 'completed' WHERE job_id = (SELECT min(job_id) FROM analysis_queue WHERE status = 'pending')",
    "TRUNCATE funnel_completion",
]


def blocking_failures(conn, catalog, snapshot):
    failures = []
    for table in catalog.names:
        for outcome in proof.run(conn, catalog, table, snapshot):
            if not outcome.passed and outcome.name != "quarantine":
                failures.append((table, outcome.name, outcome.problems))
    failures += [
        (c.table, o.name, o.problems) for c, o in behaviour.run(conn, catalog, snapshot) if not o.passed
    ]
    return failures


def test_checks_follow_the_apps_writes_and_catch_unlogged_ones(conn, catalog, sample_db, tmp_path):
    migrate(conn, catalog, sample_db, "run-1", tmp_path)
    phase.declare(conn, phase.SWITCHED, by="test", note="the app writes to PostgreSQL from now on")
    snapshot = tmp_path / "run-1.snapshot.db"
    before = {
        t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("tweets", "funnel_completion")
    }
    for statement in APP_WRITES:
        conn.execute(statement)
    assert blocking_failures(conn, catalog, snapshot) == []

    tweets = {o.name: o for o in proof.run(conn, catalog, "tweets", snapshot)}
    assert tweets["rows_conserved"].metadata["app_added"] == 5 + 3  # inserts + new versions of updated rows
    assert tweets["rows_conserved"].metadata["app_removed"] == 3 + 2
    assert tweets["rows_conserved"].metadata["rows_in_table"] == before["tweets"] + 5 - 2
    completion = {o.name: o for o in proof.run(conn, catalog, "funnel_completion", snapshot)}
    assert completion["rows_conserved"].metadata["app_removed"] == before["funnel_completion"]

    silently(conn, "DELETE FROM tweets WHERE id = (SELECT min(id) FROM tweets WHERE user_id <> 'u_live')")
    failed = {(table, name) for table, name, _ in blocking_failures(conn, catalog, snapshot)}
    assert {("tweets", "rows_conserved"), ("tweets", "content_parity")} <= failed


def test_a_load_is_the_new_baseline(conn, catalog, sample_db, tmp_path):
    migrate(conn, catalog, sample_db, "run-1", tmp_path)
    conn.execute(APP_WRITES[2])
    assert (
        conn.execute(
            "SELECT count(*) FROM migration_audit.row_changes WHERE table_name = 'tweets'"
        ).fetchone()[0]
        == 6
    )
    with Snapshot(tmp_path / "run-1.snapshot.db") as snap:
        load_table(conn, snap, catalog, "tweets", "run-2")
    assert conn.execute("SELECT count(*) FROM migration_audit.row_changes").fetchone()[0] == 0
    assert blocking_failures(conn, catalog, tmp_path / "run-1.snapshot.db") == []
