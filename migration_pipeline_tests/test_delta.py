"""Delta sync: after a full load, only what the app changed in SQLite moves, and the result is exactly
what a full load of the changed source gives (rows, quarantine, checksums)."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from migration_pipeline.connect.settings import Settings
from migration_pipeline.connect.target import connect
from migration_pipeline.move.source_copy import file_state
from migration_pipeline.switch import apply, changeset, delta

from .helpers import editable_copy, fingerprint, migrate, sqlite_exec
from .test_live import blocking_failures

# The app's habits: updates in place, INSERT OR REPLACE (same key, new rowid), deletes, new rows good and
# bad, a parent deleted under its children, an orphan's parent arriving, a username taken twice, a value
# whose storage class alone changes (integer 5 → real 5.0 in a text column).
APP_CHANGES = [
    "UPDATE tweets SET text = text || ' (edited)' WHERE rowid IN (SELECT rowid FROM tweets ORDER BY rowid LIMIT 5)",
    "INSERT OR REPLACE INTO users (id, username, profile_data, profile_picture_url, last_scraped, created_at)"
    " SELECT id, username || '_v2', '{\"bio\":\"replaced\"}', profile_picture_url, last_scraped, created_at"
    " FROM users WHERE rowid = (SELECT min(rowid) FROM users)",
    "DELETE FROM tweets WHERE rowid IN (SELECT rowid FROM tweets ORDER BY rowid DESC LIMIT 4)",
    "DELETE FROM users WHERE id = (SELECT user_id FROM tweets WHERE user_id IN (SELECT id FROM users)"
    " GROUP BY user_id ORDER BY count(*), user_id LIMIT 1)",
    "INSERT INTO tweets (id, user_id, text, created_at, metadata) SELECT 'new-1', max(id), 'fresh',"
    " '2024-05-01T10:00:00.000Z', '{\"likes\":1}' FROM users",
    "INSERT INTO tweets (id, user_id, text, created_at, metadata) SELECT 'new-bad', max(id), 'broken',"
    " '2024-05-01 10:00:00', '{not json' FROM users",
    "INSERT OR IGNORE INTO referral_codes (code, owner_user_id, usage_count) SELECT 'NO', max(id), 0 FROM users",
    "INSERT INTO users (id, username) SELECT 'u-dup', username FROM users WHERE rowid = (SELECT max(rowid) FROM users)",
    "UPDATE tweets SET url = 5.0 WHERE id = 'class-change'",
    "UPDATE analysis_queue SET status = 'completed' WHERE job_id = (SELECT min(job_id) FROM analysis_queue)",
]


@pytest.fixture
def other_conn(server):
    """A second fresh database: where the full load of the changed source goes, for comparison."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(**server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with connect(Settings(sqlite_path=Path("unused.db"), database=name)) as conn:
        yield conn
    with psycopg.connect(**server, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _outcome(conn, catalog) -> dict:
    """Everything a load decides, per table: content, checksum and counts, and which source rows were
    quarantined for what."""
    loads = dict(
        conn.execute(
            "SELECT DISTINCT ON (table_name) table_name, (checksum, source_rows, loaded_rows, rejected_rows)::text"
            " FROM migration_audit.table_loads ORDER BY table_name, finished_at DESC"
        ).fetchall()
    )
    rejected = conn.execute(
        "SELECT r.table_name, r.source_rowid, r.kind FROM migration_audit.rejected_rows r"
        " JOIN (SELECT DISTINCT ON (table_name) table_name, run_id FROM migration_audit.table_loads"
        "       ORDER BY table_name, finished_at DESC) l USING (table_name, run_id) ORDER BY 1, 2, 3"
    ).fetchall()
    return {
        "tables": {t: (fingerprint(conn, t), loads[t]) for t in catalog.names},
        "rejected": rejected,
    }


def _sqlite_content(path, table):
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    db.text_factory = bytes  # exact bytes, invalid UTF-8 included
    try:
        return db.execute(f'SELECT rowid, * FROM "{table}" ORDER BY rowid').fetchall()
    finally:
        db.close()


def test_sync_moves_only_the_changes_and_equals_a_full_load(conn, other_conn, catalog, sample_db, tmp_path):
    source = editable_copy(sample_db, tmp_path / "app.db")
    sqlite_exec(
        source,
        "INSERT INTO tweets (id, user_id, text, created_at, url) SELECT 'class-change', max(id), 'x',"
        " '2024-01-01 00:00:00', 5 FROM users",
    )
    migrate(conn, catalog, source, "full-1", tmp_path)
    baseline = tmp_path / "full-1.snapshot.db"

    sqlite_exec(source, *APP_CHANGES)
    before = file_state(source)
    result = delta.sync(conn, catalog, source, baseline, "delta-1")
    assert file_state(source) == before  # the app's file untouched, no side files created

    tweets = result.tables["tweets"]
    assert tweets.added > 0 and tweets.removed > 0
    quarantined_before = conn.execute(
        "SELECT rejected_rows FROM migration_audit.table_loads WHERE run_id = 'full-1' AND table_name = 'tweets'"
    ).fetchone()[0]
    # of 3,000 rows only the changed ones, those quarantined before, and the deleted user's tweets
    assert tweets.restaged <= tweets.added + quarantined_before + 20
    usage = result.tables["referral_usage_log"]  # the declined-referral orphans ('NO') got their parent
    assert (
        usage.added == usage.removed == 0 and 0 < usage.inserted <= usage.restaged < usage.result.source_rows
    )
    assert not delta.changeset_path(baseline).exists()

    migrate(other_conn, catalog, source, "full-2", tmp_path)
    assert _outcome(conn, catalog) == _outcome(other_conn, catalog)
    for table in catalog.names:  # the baseline now holds the source as synced
        assert _sqlite_content(baseline, table) == _sqlite_content(source, table)
    assert blocking_failures(conn, catalog, baseline) == []

    again = delta.sync(conn, catalog, source, baseline, "delta-2")
    assert again.changed_rows == 0
    assert _outcome(conn, catalog) == _outcome(other_conn, catalog)


def test_sync_refuses_when_it_cannot_be_exact(conn, catalog, sample_db, tmp_path):
    source = editable_copy(sample_db, tmp_path / "app.db")
    migrate(conn, catalog, source, "full-1", tmp_path)
    baseline = tmp_path / "full-1.snapshot.db"

    conn.execute("INSERT INTO users (id, username) VALUES ('written-in-pg', 'pg_user')")
    with pytest.raises(
        delta.DeltaError, match="written to since the last load.*users: 1 row.s. changed by INSERT"
    ):
        delta.sync(conn, catalog, source, baseline, "delta-1")
    conn.execute("DELETE FROM users WHERE id = 'written-in-pg'")
    conn.execute("DELETE FROM migration_audit.row_changes")

    sqlite_exec(source, "DELETE FROM tweets WHERE rowid = 1")
    migrate(conn, catalog, source, "full-2", tmp_path)  # the tables now come from another snapshot
    with pytest.raises(delta.DeltaError, match="baseline snapshot is not what"):
        delta.sync(conn, catalog, source, baseline, "delta-2")

    sqlite_exec(source, "ALTER TABLE tweets ADD COLUMN lang TEXT")
    with pytest.raises(delta.DeltaError, match="columns of source table tweets changed"):
        delta.sync(conn, catalog, source, tmp_path / "full-2.snapshot.db", "delta-3")


def test_a_sync_interrupted_after_its_commit_is_completed_by_the_next(
    conn, other_conn, catalog, sample_db, tmp_path, monkeypatch
):
    source = editable_copy(sample_db, tmp_path / "app.db")
    migrate(conn, catalog, source, "full-1", tmp_path)
    baseline = tmp_path / "full-1.snapshot.db"
    sqlite_exec(source, *APP_CHANGES[:4])

    real = changeset.advance_baseline
    monkeypatch.setattr(changeset, "advance_baseline", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        delta.sync(conn, catalog, source, baseline, "delta-1")
    monkeypatch.setattr(changeset, "advance_baseline", real)
    assert delta.changeset_path(baseline).exists()  # PostgreSQL committed, the baseline is behind

    sqlite_exec(source, *APP_CHANGES[4:6])
    result = delta.sync(conn, catalog, source, baseline, "delta-2")  # recovers, then syncs the rest
    assert result.tables["tweets"].added == 2
    migrate(other_conn, catalog, source, "full-2", tmp_path)
    assert _outcome(conn, catalog) == _outcome(other_conn, catalog)


def _swap_usernames(source, a, b):
    db = sqlite3.connect(source)
    (name_a,), (name_b,) = (
        db.execute("SELECT username FROM users WHERE id = ?", (k,)).fetchone() for k in (a, b)
    )
    with db:
        db.execute("UPDATE users SET username = ? WHERE id = ?", (name_b, a))
        db.execute("UPDATE users SET username = ? WHERE id = ?", (name_a, b))
    db.close()


def test_users_swapping_usernames(conn, other_conn, catalog, sample_db, tmp_path):
    """PostgreSQL checks UNIQUE row by row: a swap must not collide halfway, in a full re-load (merge)
    or a delta."""
    source = editable_copy(sample_db, tmp_path / "app.db")
    migrate(conn, catalog, source, "full-1", tmp_path)
    (a, name_a), (b, name_b) = conn.execute(
        "SELECT id, username FROM users u WHERE NOT EXISTS (SELECT 1 FROM migration_audit.rejected_rows r"
        " WHERE r.table_name = 'users' AND r.raw_row->>'username' = u.username) ORDER BY id LIMIT 2"
    ).fetchall()
    _swap_usernames(source, a, b)
    migrate(conn, catalog, source, "full-2", tmp_path)
    assert conn.execute("SELECT username FROM users WHERE id IN (%s, %s) ORDER BY id", (a, b)).fetchall() == [
        (name_b,),
        (name_a,),
    ]
    _swap_usernames(source, a, b)
    result = delta.sync(conn, catalog, source, tmp_path / "full-2.snapshot.db", "delta-1")
    assert result.tables["users"].updated == 2
    migrate(other_conn, catalog, source, "full-3", tmp_path)
    assert _outcome(conn, catalog) == _outcome(other_conn, catalog)


def test_a_failed_apply_changes_nothing(conn, catalog, sample_db, tmp_path, monkeypatch):
    source = editable_copy(sample_db, tmp_path / "app.db")
    migrate(conn, catalog, source, "full-1", tmp_path)
    baseline = tmp_path / "full-1.snapshot.db"
    fingerprints = {t: fingerprint(conn, t) for t in catalog.names}
    baseline_bytes = baseline.read_bytes()
    sqlite_exec(source, *APP_CHANGES)
    real = apply.apply_table

    def failing(conn, catalog, spec, *args):
        if spec.name == "referral_codes":  # after users and tweets were changed in this transaction
            raise RuntimeError("server gone")
        return real(conn, catalog, spec, *args)

    monkeypatch.setattr(apply, "apply_table", failing)
    with pytest.raises(RuntimeError, match="server gone"):
        delta.sync(conn, catalog, source, baseline, "delta-1")
    assert {t: fingerprint(conn, t) for t in catalog.names} == fingerprints
    assert baseline.read_bytes() == baseline_bytes and not delta.changeset_path(baseline).exists()
    assert (
        conn.execute("SELECT count(*) FROM migration_audit.table_loads WHERE run_id = 'delta-1'").fetchone()[
            0
        ]
        == 0
    )


def test_a_sync_waits_for_readers_of_its_baseline(conn, catalog, sample_db, tmp_path):
    """Loads and checks read the snapshot while a sync would change it in place: the sync waits."""
    import threading

    from migration_pipeline.move.source import Snapshot

    source = editable_copy(sample_db, tmp_path / "app.db")
    migrate(conn, catalog, source, "full-1", tmp_path)
    baseline = tmp_path / "full-1.snapshot.db"
    sqlite_exec(source, *APP_CHANGES[:3])
    results = []
    reader = Snapshot(baseline)  # a check step reading the baseline
    syncing = threading.Thread(
        target=lambda: results.append(delta.sync(conn, catalog, source, baseline, "d-1"))
    )
    syncing.start()
    syncing.join(timeout=1.0)
    assert syncing.is_alive() and not results  # waiting for the reader
    reader.close()
    syncing.join(timeout=60)
    assert results and results[0].changed_rows > 0
