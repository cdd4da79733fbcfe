"""Monitoring against a real PostgreSQL: each provoked condition raises its alert once; quiet raises none."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from psycopg_pool import ConnectionPool, PoolTimeout

from migration_pipeline.catalog import load_catalog
from migration_pipeline.connect.target import apply_schema, conninfo
from migration_pipeline.watch import monitor

from .helpers import migrate

QUIET = monitor.Thresholds()


@pytest.fixture
def target(conn, catalog, sample_db, tmp_path, settings):
    migrate(conn, catalog, sample_db, "run-1", tmp_path)
    return conninfo(settings)


def kinds(alerts):
    return {a.kind for a in alerts}


def sample_until(conn, condition, previous=None, pool=None, thresholds=QUIET, seconds=8.0):
    """Sample until an alert satisfies ``condition`` (statistics reach the server asynchronously)."""
    deadline = time.monotonic() + seconds
    while True:
        sample = monitor.take_sample(conn, pool, previous)
        alerts = monitor.evaluate(sample, thresholds)
        if any(condition(a) for a in alerts) or time.monotonic() > deadline:
            return sample, alerts
        time.sleep(0.25)


def test_quiet_database_raises_nothing(conn, target):
    sample = monitor.take_sample(conn)
    assert monitor.evaluate(sample, QUIET) == []
    assert sample["queries"]["available"] and sample["connections"]["max_connections"] > 0
    assert {t["table"] for t in sample["tables"]["per_table"]} >= {"users", "tweets"}


def test_slow_query(conn, target):
    with psycopg.connect(target, autocommit=True) as app:
        for _ in range(2):
            app.execute("SELECT pg_sleep(0.6), count(*) FROM tweets WHERE user_id = %s", ("u1",))
    _, alerts = sample_until(conn, lambda a: a.kind == "slow_query")
    slow = [a for a in alerts if a.kind == "slow_query"]
    assert slow and "pg_sleep" in slow[0].message and slow[0].numbers["mean_ms"] >= 500
    assert "'u1'" not in slow[0].message and "$1" in slow[0].message  # parameters never stored


def test_long_transaction_and_lock_wait(conn, target):
    holder = psycopg.connect(target)
    holder.execute("UPDATE users SET username = username WHERE id = 'u0'")  # holds the row lock, stays open
    waiter = psycopg.connect(target, autocommit=True)
    blocked = threading.Thread(
        target=lambda: waiter.execute("UPDATE users SET username = username WHERE id = 'u0'")
    )
    blocked.start()
    try:
        thresholds = monitor.Thresholds(transaction_age_s=1)
        time.sleep(1.2)
        _, alerts = sample_until(conn, lambda a: a.kind == "lock_wait", thresholds=thresholds)
        assert {"long_transaction", "lock_wait"} <= kinds(alerts)
        lock = next(a for a in alerts if a.kind == "lock_wait")
        assert holder.info.backend_pid in lock.numbers["waiting"][0]["blocked_by"]
        assert "UPDATE users" in lock.message
        long = next(a for a in alerts if a.kind == "long_transaction")
        assert long.subject == str(holder.info.backend_pid) and long.numbers["age_s"] >= 1
    finally:
        holder.rollback()
        blocked.join(timeout=10)
        holder.close()
        waiter.close()
    assert "lock_wait" not in kinds(monitor.evaluate(monitor.take_sample(conn), QUIET))


def test_deadlock(conn, target):
    before = monitor.take_sample(conn)
    a, b = psycopg.connect(target), psycopg.connect(target)
    a.execute("UPDATE users SET username = username WHERE id = 'u0'")
    b.execute("UPDATE users SET username = username WHERE id = 'u7'")
    errors = []

    def cross(c, row):
        try:
            c.execute("UPDATE users SET username = username WHERE id = %s", (row,))
        except psycopg.errors.DeadlockDetected as err:
            errors.append(err)
        finally:
            c.rollback()

    threads = [threading.Thread(target=cross, args=(a, "u7")), threading.Thread(target=cross, args=(b, "u0"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=15)
    a.close()
    b.close()
    assert len(errors) == 1
    _, alerts = sample_until(conn, lambda x: x.kind == "deadlock", previous=before)
    deadlock = next(x for x in alerts if x.kind == "deadlock")
    assert deadlock.numbers["new_deadlocks"] >= 1


def test_exhausted_pool(conn, target):
    pool = ConnectionPool(target, min_size=1, max_size=1, timeout=0.3, name="app-pool", open=True)
    try:
        with pool.connection():
            with pytest.raises(PoolTimeout), pool.connection():
                pass
            alerts = monitor.evaluate(monitor.take_sample(conn, pool), QUIET)
        pool_alert = next(a for a in alerts if a.kind == "pool")
        assert pool_alert.numbers["requests_errors"] >= 1 and "exhausted" in pool_alert.message
    finally:
        pool.close()


def test_server_connection_utilization(conn, target):
    alerts = monitor.evaluate(monitor.take_sample(conn), monitor.Thresholds(pool_utilization=0.0001))
    assert "connections" in kinds(alerts)


def test_an_incident_alerts_once_until_it_clears(conn, target):
    tight = monitor.Thresholds(pool_utilization=0.0001)
    first, open_now = monitor.new_incidents(monitor.evaluate(monitor.take_sample(conn), tight), set())
    again, open_now = monitor.new_incidents(monitor.evaluate(monitor.take_sample(conn), tight), open_now)
    assert kinds(first) == {"connections"} and again == []
    cleared, open_now = monitor.new_incidents(monitor.evaluate(monitor.take_sample(conn), QUIET), open_now)
    assert cleared == [] and open_now == set()
    back, _ = monitor.new_incidents(monitor.evaluate(monitor.take_sample(conn), tight), open_now)
    assert kinds(back) == {"connections"}


def test_history_is_recorded(conn, target):
    apply_schema(conn, load_catalog())
    sample = monitor.take_sample(conn)
    monitor.record(conn, sample, [monitor.Alert("deadlock", "x", "test alert", {"n": 1})])
    assert conn.execute("SELECT count(*) FROM migration_audit.monitor_samples").fetchone()[0] == 1
    assert conn.execute("SELECT message FROM migration_audit.monitor_alerts").fetchone()[0] == "test alert"


def test_thresholds_from_environment():
    t = monitor.Thresholds.from_env({"MONITOR_SLOW_QUERY_MS": "250", "MONITOR_LOCK_WAITS": "3"})
    assert t.slow_query_ms == 250.0 and t.lock_waits == 3 and t.deadlocks == 1


def test_load_generator_plays_the_app_workload_and_stays_within_thresholds(conn, catalog, target, tmp_path):
    from migration_pipeline.move import phase
    from migration_pipeline.prove import proof
    from migration_pipeline.watch import loadgen

    phase.declare(conn, phase.SWITCHED, by="test")  # the app writes to PostgreSQL from now on
    before = monitor.take_sample(conn)
    result = loadgen.run(target, concurrency=4, seconds=2.0)
    assert not result.errors, result.errors
    assert set(result.operations) == {
        "date_range",
        "full_text",
        "tweet_batch",
        "profile_upsert",
        "funnel_update",
        "referral",
    }
    deadline = time.monotonic() + 8  # statistics reach the server asynchronously
    while True:
        sample = monitor.take_sample(conn, previous=before)
        if sample["transactions"]["new_commits"] >= result.total or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert sample["transactions"]["new_commits"] >= result.total
    assert monitor.evaluate(sample, QUIET) == []
    # the workload's writes are app writes: the migration's checks still hold, following the change log
    for outcome in proof.run(conn, catalog, "tweets", tmp_path / "run-1.snapshot.db"):
        assert outcome.passed or outcome.name == "quarantine", (outcome.name, outcome.problems)
