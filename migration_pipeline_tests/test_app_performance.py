"""The app's operations on SQLite and on the migrated PostgreSQL (real files, the embedded server): the
same answers on the same data; the pool queues, times out and recovers when exhausted; concurrent funnel
updates lose nothing at the adapter's isolation level, while the read-modify-write a naive port would do
loses updates at READ COMMITTED (the anomaly, shown) and is refused at REPEATABLE READ; JSONB queries
measured on both; and one run of the ``app_performance`` job fills the audit table and the asset."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest
from dagster import AssetKey, DagsterInstance
from psycopg_pool import ConnectionPool, PoolTimeout

from migration_pipeline.connect.target import connect, conninfo
from migration_pipeline.move.source import file_sha256
from migration_pipeline.samples.sample_data import generate
from migration_pipeline.watch.app_ops import SqliteApp
from migration_pipeline.watch.app_postgres import PostgresApp
from migration_pipeline.watch.app_workload import SEARCH_WORDS

from .helpers import migrate

pytestmark = pytest.mark.slow
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def both(settings, catalog, tmp_path):
    """(SQLite app on a clean app-shaped file, PostgreSQL app on the same file migrated)."""
    source = generate(tmp_path / "app.db", users=200, tweets=2_000, clean=True, with_queue=True)
    with connect(settings) as conn:
        results = migrate(conn, catalog, source, "app-ops", tmp_path)
    assert not any(r.rejected_rows for r in results.values())  # the same rows on both sides
    pool = ConnectionPool(conninfo(settings), min_size=1, max_size=4, kwargs={"autocommit": True}, open=True)
    lite = SqliteApp(source)
    yield lite, PostgresApp(pool)
    lite.close()
    pool.close()


def _writes(app) -> int | None:
    """The same writes, in the same order, as the app would make them."""
    for n in range(3):
        app.save_profile(f"same{n}", f"same_user_{n}", {"name": f"Same {n}", "followers": 10 * n})
        app.save_tweets(
            f"same{n}",
            [
                {"id": f"same{n}-{i}", "text": f"{SEARCH_WORDS[i % 8]} and garden notes {i}",
                 "created_at": T0 + timedelta(days=i), "is_reply": i % 3 == 0, "metadata": {"likes": i}}
                for i in range(12)
            ],
        )  # fmt: skip
        for step in range(4):
            app.update_funnel(f"same{n}", f"step{step}", f"answer {step}")
    assert app.track_referral("SAME", "same0", "same1") is True
    assert app.track_referral("SAME", "same0", "same1") is False  # once per referred user
    assert app.track_referral("SAME", "same0", "same2") is True
    jobs = [app.enqueue_job("same0", 2) for _ in range(3)]
    claimed = app.claim_job()
    app.job_progress(jobs[0])
    return claimed


def test_both_backends_answer_the_same(both):
    lite, pg = both
    assert _writes(lite) == _writes(pg) is not None  # the same job claimed
    for n in range(3):
        user = f"same{n}"
        window = (T0 + timedelta(days=2), T0 + timedelta(days=7))
        assert lite.tweets_in_range(user, *window) == pg.tweets_in_range(user, *window) != []
        assert lite.non_reply_tweets(user) == pg.non_reply_tweets(user) != []
        assert lite.referrer_stats(user) == pg.referrer_stats(user)
    assert lite.referrer_stats("same0") == (2, 2)
    for word in SEARCH_WORDS:  # over every tweet of the migrated sample, too
        assert lite.search_tweets(word) == pg.search_tweets(word), word
    assert tuple(lite.completion_stats()) == tuple(pg.completion_stats())
    for tag in ("data", "python", "rocket"):
        assert lite.tweets_with_hashtag(tag) == pg.tweets_with_hashtag(tag) != [], tag
    assert lite.popular_users(900_000) == pg.popular_users(900_000) != []
    with pg.pool.connection() as conn:
        (funnel,) = conn.execute(
            "SELECT current_command_index FROM funnel_progress WHERE user_id = 'same0'"
        ).fetchone()
    assert (
        funnel
        == lite.db.execute(
            "SELECT current_command_index FROM funnel_progress WHERE user_id = 'same0'"
        ).fetchone()[0]
    )


def test_an_exhausted_pool_queues_times_out_and_recovers(settings):
    pool = ConnectionPool(conninfo(settings), min_size=2, max_size=2, timeout=0.5, open=True)
    try:
        held = [pool.getconn(), pool.getconn()]  # every connection busy
        started = time.monotonic()
        with pytest.raises(PoolTimeout):
            pool.getconn()  # queued, then refused after the timeout: no unbounded wait
        assert 0.4 < time.monotonic() - started < 3

        got = []
        waiter = threading.Thread(target=lambda: got.append(pool.getconn(timeout=5)))
        waiter.start()
        time.sleep(0.3)
        assert waiter.is_alive() and not got  # queued, not failed
        pool.putconn(held.pop())  # one comes back: the queued request gets it
        waiter.join(5)
        assert got and got[0].execute("SELECT 1").fetchone() == (1,)
        stats = pool.get_stats()
        assert stats["requests_errors"] == 1 and stats["requests_queued"] >= 2
        pool.putconn(got[0])
        pool.putconn(held.pop())
        with pool.connection(timeout=1) as conn:  # recovered
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        pool.close()


def _funnel(conn, user: str) -> tuple[int, int]:
    index, done = conn.execute(
        "SELECT current_command_index, jsonb_array_length(completed_commands) FROM funnel_progress"
        " WHERE user_id = %s",
        (user,),
    ).fetchone()
    return index, done


def test_concurrent_funnel_updates_lose_nothing(both, settings):
    _, pg = both
    writers, each = 8, 25

    def write(n: int) -> None:
        for i in range(each):
            pg.update_funnel("u1", f"w{n}-{i}", "ok")

    with connect(settings) as conn:
        before = _funnel(conn, "u1") if conn.execute(
            "SELECT 1 FROM funnel_progress WHERE user_id = 'u1'").fetchone() else (0, 0)  # fmt: skip
    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with connect(settings) as conn:
        assert _funnel(conn, "u1") == (before[0] + writers * each, before[1] + writers * each)
        (answers,) = conn.execute(
            "SELECT count(*) FROM funnel_progress, jsonb_object_keys(command_responses) k"
            " WHERE user_id = 'u1' AND k LIKE 'w%%'"
        ).fetchone()
    assert answers == writers * each


def _read_modify_write(settings, isolation: str, barrier: threading.Barrier, outcome: list) -> None:
    """What a line-by-line port of the app's SQLite code would do: read the JSON, merge it in Python,
    write it back, in one transaction at ``isolation``."""
    with connect(settings, autocommit=False) as conn:
        conn.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
        index, done = conn.execute(
            "SELECT current_command_index, completed_commands FROM funnel_progress WHERE user_id = 'u2'"
        ).fetchone()
        barrier.wait(5)  # both have read before either writes
        try:
            conn.execute(
                "UPDATE funnel_progress SET current_command_index = %s, completed_commands = %s"
                " WHERE user_id = 'u2'",
                (index + 1, orjson.dumps([*done, threading.current_thread().name]).decode()),
            )
            conn.commit()
            outcome.append("committed")
        except psycopg.errors.SerializationFailure:
            conn.rollback()
            outcome.append("serialization failure")


@pytest.mark.parametrize("isolation", ["READ COMMITTED", "REPEATABLE READ"])
def test_read_modify_write_shows_why_the_adapter_updates_atomically(both, settings, isolation):
    with connect(settings) as conn:
        conn.execute(
            "INSERT INTO funnel_progress (user_id, current_command_index, completed_commands) VALUES ('u2', 0, '[]')"
            " ON CONFLICT (user_id) DO UPDATE SET current_command_index = 0, completed_commands = '[]'"
        )
    barrier, outcome = threading.Barrier(2), []
    threads = [
        threading.Thread(
            target=_read_modify_write, args=(settings, isolation, barrier, outcome), name=f"w{n}"
        )
        for n in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    with connect(settings) as conn:
        index, done = _funnel(conn, "u2")
    if isolation == "READ COMMITTED":  # both committed, one update lost: the anomaly
        assert sorted(outcome) == ["committed", "committed"] and (index, done) == (1, 1)
    else:  # refused instead of lost: the writer must retry
        assert sorted(outcome) == ["committed", "serialization failure"] and (index, done) == (1, 1)
    # the adapter's one-statement update at READ COMMITTED: both count
    _, pg = both
    barrier = threading.Barrier(2)
    threads = [
        threading.Thread(target=lambda: (barrier.wait(5), pg.update_funnel("u2", "x", "y"))) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    with connect(settings) as conn:
        assert _funnel(conn, "u2") == (index + 2, done + 2)


def test_jsonb_queries_are_measured_on_both(both):
    lite, pg = both
    timings = {}
    for name, call in (("tweets_with_hashtag", lambda app: app.tweets_with_hashtag("python")),
                       ("popular_users", lambda app: app.popular_users(500_000))):  # fmt: skip
        for app in (lite, pg):
            runs = []
            for _ in range(20):
                began = time.perf_counter()
                answer = call(app)
                runs.append((time.perf_counter() - began) * 1000)
            timings[(name, app.name)] = (sorted(runs)[10], answer)
        assert timings[(name, "sqlite")][1] == timings[(name, "postgresql")][1] != []
    print({k: round(v[0], 3) for k, v in timings.items()})  # the measured medians, ms
    assert all(v[0] > 0 for v in timings.values())


def test_the_job_fills_the_audit_table_and_the_asset(settings, tmp_path, monkeypatch):
    source = generate(tmp_path / "app.db", users=100, tweets=1_000, with_queue=True)
    monkeypatch.setenv("SQLITE_PATH", str(source))
    monkeypatch.setenv("PG_DATABASE", settings.database)
    from migration_pipeline.definitions import defs

    digest = file_sha256(source)
    config = {
        "ops": {
            "measure_app_performance": {"config": {"concurrency": [1, 2, 4], "seconds": 1.0, "warmup": 0.2}}
        },
        "execution": {"config": {"in_process": {}}},
    }
    with DagsterInstance.ephemeral() as instance:
        result = defs.get_job_def("app_performance").execute_in_process(run_config=config, instance=instance)
        assert result.success
        (event,) = instance.fetch_materializations(AssetKey(["audit", "app_performance"]), limit=1).records
        metadata = event.asset_materialization.metadata
    assert "![p95 latency per operation](data:image/png;base64," in metadata["verdict"].value
    assert "## PostgreSQL plans of the statements" in metadata["verdict"].value
    assert "### claim_job (planned, not executed)" in metadata["verdict"].value
    assert metadata["postgresql_errors"].value == 0
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT backend, count(DISTINCT operation), count(DISTINCT concurrency), sum(errors)"
            " FROM migration_audit.app_performance WHERE run_id = %s GROUP BY backend ORDER BY backend",
            (result.run_id,),
        ).fetchall()
    assert [r[0] for r in rows] == ["postgresql", "sqlite"]
    assert all(r[1] >= 8 and r[2] == 3 for r in rows)
    assert rows[0][3] == 0  # no error on PostgreSQL
    assert file_sha256(source) == digest  # the app's file is untouched: only a copy was written
