"""A table nothing references is loaded into its shadow and swapped in (move/shadow.py): each row written
once, readers keep the old content until the swap, and a failure or a killed session leaves the old table
and no shadow. What hangs on the table (owner's grants, SERIAL sequences, comments) survives the swap;
what a swap would lose (a view) makes the load replace the content in place instead."""

from __future__ import annotations

import threading

import psycopg
import pytest

from migration_pipeline.connect.target import conninfo
from migration_pipeline.move import guard, shadow
from migration_pipeline.move.load import load_table
from migration_pipeline.move.source import Snapshot

from .helpers import failures, fingerprint, migrate


@pytest.fixture
def proven(conn, catalog, sample_db, tmp_path):
    migrate(conn, catalog, sample_db, "run-1", tmp_path)
    return tmp_path / "run-1.snapshot.db"


def _oid(conn, table: str) -> int:
    return conn.execute("SELECT %s::regclass::oid", (table,)).fetchone()[0]


def _shadows(conn) -> list[str]:
    return [
        r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (shadow.SCHEMA,))
    ]


def test_the_table_is_swapped_in_and_readers_see_the_old_content_meanwhile(conn, catalog, proven, settings):
    before, oid = fingerprint(conn, "tweets"), _oid(conn, "tweets")
    conn.execute("DELETE FROM tweets WHERE id IN (SELECT id FROM tweets ORDER BY id LIMIT 3)")
    changed, seen = fingerprint(conn, "tweets"), []
    conn.commit()

    def reader(rows: int) -> None:  # while the load stages rows, another session reads without waiting
        with psycopg.connect(conninfo(settings), autocommit=True) as other:
            other.execute("SET lock_timeout = '1s'")
            seen.append(fingerprint(other, "tweets"))

    with Snapshot(proven) as snap:
        load_table(
            conn,
            snap,
            catalog,
            "tweets",
            "reload",
            progress=reader,
            policy=guard.ShrinkPolicy(confirmed=frozenset({"*"})),
        )
    assert seen and set(seen) == {changed}
    assert fingerprint(conn, "tweets") == before and _oid(conn, "tweets") != oid
    assert _shadows(conn) == []
    assert failures(conn, catalog, proven) == {}


def test_owner_grants_comment_and_sequences_survive_the_swap(conn, catalog, proven, database):
    role = f"reader_{database[-8:]}"
    conn.execute(f"CREATE ROLE {role}")
    conn.execute(f"GRANT SELECT, INSERT ON referral_tracking TO {role} WITH GRANT OPTION")
    conn.execute("COMMENT ON TABLE referral_tracking IS 'who referred whom'")
    conn.commit()
    with Snapshot(proven) as snap:
        load_table(conn, snap, catalog, "referral_tracking", "reload")
    grants = conn.execute(
        "SELECT privilege_type, is_grantable FROM information_schema.role_table_grants"
        " WHERE table_name = 'referral_tracking' AND grantee = %s ORDER BY 1",
        (role,),
    ).fetchall()
    assert grants == [("INSERT", "YES"), ("SELECT", "YES")]
    assert conn.execute("SELECT obj_description('referral_tracking'::regclass, 'pg_class')").fetchone()[
        0
    ] == ("who referred whom")
    sequence = conn.execute("SELECT pg_get_serial_sequence('referral_tracking', 'id')").fetchone()[0]
    assert sequence is not None  # still owned by the (new) table, so the app's inserts get new ids
    top = conn.execute("SELECT max(id) FROM referral_tracking").fetchone()[0]
    new_id = conn.execute(
        "INSERT INTO referral_tracking (referral_code, referrer_user_id, referred_user_id)"
        " SELECT 'X', id, id FROM users LIMIT 1 RETURNING id"
    ).fetchone()[0]
    assert new_id > top
    conn.rollback()
    conn.execute(f"DROP OWNED BY {role}")
    conn.execute(f"DROP ROLE {role}")
    conn.commit()


def test_a_refused_load_leaves_the_old_table_and_no_shadow(conn, catalog, proven, tmp_path):
    oid, before = _oid(conn, "tweets"), fingerprint(conn, "tweets")
    empty = tmp_path / "empty.snapshot.db"
    with Snapshot(proven) as snap:  # a snapshot whose tweets are gone: the shrink guard refuses
        snap_path = snap.path
    import shutil
    import sqlite3

    shutil.copyfile(snap_path, empty)
    with sqlite3.connect(empty) as db:
        db.execute("DELETE FROM tweets")
    with Snapshot(empty) as snap, pytest.raises(guard.ShrinkRefused):
        load_table(conn, snap, catalog, "tweets", "shrink")
    assert _oid(conn, "tweets") == oid and fingerprint(conn, "tweets") == before
    assert _shadows(conn) == []


def test_a_session_killed_mid_load_leaves_the_old_table_and_no_shadow(conn, catalog, proven, settings):
    oid, before = _oid(conn, "tweets"), fingerprint(conn, "tweets")
    loader = psycopg.connect(conninfo(settings))
    pid = loader.info.backend_pid
    killed = threading.Event()

    def kill(rows: int) -> None:  # the server ends the loading session while it COPYs into the shadow
        if not killed.is_set():
            with psycopg.connect(conninfo(settings), autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            killed.set()

    with Snapshot(proven) as snap, pytest.raises(psycopg.OperationalError):
        load_table(loader, snap, catalog, "tweets", "killed", progress=kill)
    loader.close()
    assert _oid(conn, "tweets") == oid and fingerprint(conn, "tweets") == before
    assert _shadows(conn) == []


def test_a_view_on_the_table_makes_the_load_replace_in_place(conn, catalog, proven):
    conn.execute(
        "CREATE VIEW recent_tweets AS SELECT id, text FROM tweets WHERE created_at > now() - interval '1 year'"
    )
    conn.commit()
    oid = _oid(conn, "tweets")
    assert shadow.obstacle(conn, "tweets", frozenset()) == "a view or rule depends on it"
    with Snapshot(proven) as snap:
        load_table(conn, snap, catalog, "tweets", "reload")
    assert _oid(conn, "tweets") == oid  # replaced in place: the view still reads it
    conn.execute("SELECT count(*) FROM recent_tweets").fetchone()
    assert failures(conn, catalog, proven) == {}


def test_the_swap_waits_for_a_reader_then_goes_on(conn, catalog, proven, settings):
    release = threading.Event()

    def long_reader() -> None:
        with psycopg.connect(conninfo(settings)) as other:
            other.execute("SELECT count(*) FROM tweets").fetchone()  # holds ACCESS SHARE until commit
            release.wait(10)
            other.rollback()

    thread = threading.Thread(target=long_reader)
    thread.start()
    threading.Timer(3.0, release.set).start()  # longer than one lock wait: the swap retries
    with Snapshot(proven) as snap:
        result = load_table(conn, snap, catalog, "tweets", "reload")
    thread.join()
    assert release.is_set() and result.loaded_rows > 0
    assert failures(conn, catalog, proven) == {}


def test_index_builds_get_256mb_or_the_servers_larger_setting(conn):
    for server, expected in (("64MB", "256MB"), ("1GB", "1GB")):
        with conn.transaction():
            conn.execute(f"SET LOCAL maintenance_work_mem = '{server}'")
            shadow.enough_memory(conn)
            assert conn.execute("SHOW maintenance_work_mem").fetchone()[0] == expected


def test_child_tables_loading_at_once_do_not_deadlock(conn, catalog, proven, settings):
    """Two tables referencing users, loaded side by side as Dagster's executor runs them: their swaps
    lock users, and without load.PARENTS_LOCK they could deadlock (seen in CI)."""
    errors: list[BaseException] = []

    def load(table: str, start: threading.Barrier) -> None:
        try:
            with psycopg.connect(conninfo(settings)) as other, Snapshot(proven) as snap:
                start.wait()
                load_table(other, snap, catalog, table, f"again-{table}")
        except BaseException as err:  # noqa: BLE001 (reported below)
            errors.append(err)

    for _ in range(8):
        start = threading.Barrier(3)  # the three start together
        threads = [
            threading.Thread(target=load, args=(t, start))
            for t in ("tweets", "personality_analysis", "funnel_progress")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
