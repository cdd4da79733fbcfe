"""Watching PostgreSQL after the move: samples of its health, thresholds, and alerts once per incident.

In:  a connection to the target database, optionally a ``psycopg_pool.ConnectionPool`` whose stats to
     include, the previous sample (for rates) and :class:`Thresholds`.
Out: :func:`take_sample` -> a JSON-able dict: server connections (``pg_stat_activity`` by state,
     utilization of ``max_connections``), the pool's own stats, queries (``pg_stat_statements``: calls,
     mean/max time, top by total time, slow ones; normalized text only, parameters never), transactions
     (longest open, commits/rollbacks, deadlocks, waiting locks), tables and indexes (scans, dead tuples,
     sizes, unused indexes, cache hit ratio). :func:`evaluate` turns a sample into :class:`Alert` s, each
     with a stable ``incident`` key; :func:`new_incidents` keeps only those not already open, so an
     operator hears of an incident once, not on every tick. :func:`record` stores samples and alerts in
     ``migration_audit`` for history and plots.
Fails: psycopg errors propagate. A missing ``pg_stat_statements`` is not an error: the sample says so.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from ..catalog import Catalog, load_catalog
from ..connect.target import apply_schema


@dataclass(frozen=True)
class Thresholds:
    pool_utilization: float = 0.8  # server connections / max_connections
    slow_query_ms: float = 500.0  # mean execution time of a statement
    transaction_age_s: float = 60.0  # an open transaction older than this
    lock_waits: int = 1  # sessions waiting for a lock
    deadlocks: int = 1  # new deadlocks since the previous sample
    cache_hit_ratio: float = 0.95  # below this (once enough blocks were read to judge)
    pool_waiting: int = 1  # requests waiting for a connection of the pipeline's pool

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Thresholds:
        """``MONITOR_<FIELD>`` overrides each default, e.g. ``MONITOR_SLOW_QUERY_MS=250``."""
        env = os.environ if env is None else env
        values = {}
        for name, default in asdict(cls()).items():
            raw = env.get(f"MONITOR_{name.upper()}")
            if raw:
                values[name] = type(default)(raw)
        return cls(**values)


@dataclass(frozen=True)
class SensorSetting:
    """How often the monitoring sensor ticks and whether it starts running (it is off unless asked for)."""

    interval_s: int = 60
    running: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SensorSetting:
        """``MONITOR_INTERVAL_S`` (seconds, default 60) and ``MONITOR_SENSOR`` (``on``, ``1``, ``true``)."""
        env = os.environ if env is None else env
        running = env.get("MONITOR_SENSOR", "").lower() in ("on", "1", "true")
        return cls(int(env.get("MONITOR_INTERVAL_S", "60")), running)


@dataclass(frozen=True)
class Alert:
    kind: str
    subject: str
    message: str
    numbers: dict = field(default_factory=dict)

    @property
    def incident(self) -> str:
        return f"{self.kind}:{self.subject}"


def _rows(conn: psycopg.Connection, query: str, params: tuple = ()) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def _has_pg_stat_statements(conn) -> bool:
    """Whether pg_stat_statements can be read here. Created in this database when missing (it works when
    the server preloads it, as the embedded one does); an extension that exists but is not preloaded
    cannot be read, and counts as missing."""
    try:
        with conn.transaction():
            if not conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone():
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            conn.execute("SELECT 1 FROM pg_stat_statements(false) LIMIT 1")
        return True
    except psycopg.Error:
        return False


def take_sample(
    conn: psycopg.Connection, pool: ConnectionPool | None = None, previous: dict | None = None, top: int = 5
) -> dict:
    """One sample of the server's health (reads only, except creating pg_stat_statements if preloaded)."""
    database = conn.info.dbname
    sample: dict = {"sampled_at": datetime.now(UTC).isoformat(), "database": database}
    activity = _rows(
        conn,
        "SELECT count(*) AS total, count(*) FILTER (WHERE state = 'active') AS active,"
        " count(*) FILTER (WHERE state = 'idle') AS idle,"
        " count(*) FILTER (WHERE state LIKE 'idle in transaction%%') AS idle_in_transaction,"
        " count(*) FILTER (WHERE wait_event_type = 'Lock') AS waiting,"
        " current_setting('max_connections')::int AS max_connections"
        " FROM pg_stat_activity WHERE backend_type = 'client backend'",
    )[0]
    activity["utilization"] = round(activity["total"] / activity["max_connections"], 4)
    sample["connections"] = activity
    if pool is not None:
        sample["pool"] = {k: v for k, v in pool.get_stats().items()}
    sample["transactions"] = _transactions(conn, database, previous)
    sample["queries"] = _queries(conn, top) if _has_pg_stat_statements(conn) else {"available": False}
    sample["tables"] = _tables(conn)
    return sample


def _transactions(conn, database: str, previous: dict | None) -> dict:
    stats = _rows(
        conn,
        "SELECT xact_commit, xact_rollback, deadlocks, blks_hit, blks_read FROM pg_stat_database WHERE datname = %s",
        (database,),
    )[0]
    oldest = _rows(
        conn,
        "SELECT pid, extract(epoch FROM now() - xact_start)::float AS age_s, state, left(query, 300) AS query"
        " FROM pg_stat_activity WHERE xact_start IS NOT NULL AND backend_type = 'client backend'"
        " AND pid <> pg_backend_pid() ORDER BY xact_start LIMIT 1",
    )
    waiting = _rows(
        conn,
        "SELECT a.pid, left(a.query, 300) AS query, pg_blocking_pids(a.pid) AS blocked_by,"
        " extract(epoch FROM now() - a.query_start)::float AS waiting_s"
        " FROM pg_stat_activity a WHERE a.wait_event_type = 'Lock' ORDER BY a.query_start LIMIT 5",
    )
    before = (previous or {}).get("transactions", {})
    hits = stats["blks_hit"] + stats["blks_read"]
    return {
        **{k: stats[k] for k in ("xact_commit", "xact_rollback", "deadlocks")},
        "new_commits": stats["xact_commit"] - before.get("xact_commit", stats["xact_commit"]),
        "new_rollbacks": stats["xact_rollback"] - before.get("xact_rollback", stats["xact_rollback"]),
        "new_deadlocks": stats["deadlocks"] - before.get("deadlocks", stats["deadlocks"]),
        "cache_hit_ratio": round(stats["blks_hit"] / hits, 4) if hits else None,
        "blocks_read": hits,
        "oldest_transaction": oldest[0] if oldest else None,
        "lock_waits": waiting,
    }


def _queries(conn, top: int) -> dict:
    """pg_stat_statements of this database, read once: normalized statements only (constants become $1...)."""
    rows = _rows(
        conn,
        "SELECT * FROM (SELECT queryid::text AS queryid, left(query, 500) AS query, calls,"
        " round(mean_exec_time::numeric, 2)::float AS mean_ms, round(max_exec_time::numeric, 2)::float AS max_ms,"
        " round(total_exec_time::numeric, 2)::float AS total_ms,"
        " rank() OVER (ORDER BY total_exec_time DESC) AS by_total, rank() OVER (ORDER BY mean_exec_time DESC) AS by_mean"
        " FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND query NOT ILIKE '%%pg_stat_statements%%') ranked WHERE by_total <= %s OR by_mean <= %s",
        (top, top),
    )
    strip = ("by_total", "by_mean")
    return {
        "available": True,
        "top_by_total_time": [{k: v for k, v in r.items() if k not in strip} for r in sorted(rows, key=lambda r: r["by_total"]) if r["by_total"] <= top],
        "slowest_by_mean": [{k: v for k, v in r.items() if k not in strip} for r in sorted(rows, key=lambda r: r["by_mean"]) if r["by_mean"] <= top],
    }  # fmt: skip


def _tables(conn) -> dict:
    tables = _rows(
        conn,
        "SELECT relname AS table, seq_scan, coalesce(idx_scan, 0) AS idx_scan, n_live_tup, n_dead_tup,"
        " pg_table_size(relid) AS table_bytes, pg_indexes_size(relid) AS index_bytes"
        " FROM pg_stat_user_tables WHERE schemaname = 'public' ORDER BY relname",
    )
    unused = _rows(
        conn,
        "SELECT relname AS table, indexrelname AS index, pg_relation_size(indexrelid) AS bytes"
        " FROM pg_stat_user_indexes WHERE schemaname = 'public' AND idx_scan = 0 ORDER BY 1, 2",
    )
    return {"per_table": tables, "unused_indexes": unused}


def evaluate(sample: dict, thresholds: Thresholds) -> list[Alert]:
    """Every threshold the sample crosses, as an alert carrying the offending numbers (and query text)."""
    alerts = []
    conns = sample["connections"]
    if conns["utilization"] >= thresholds.pool_utilization:
        alerts.append(Alert("connections", "server", f"{conns['total']} of {conns['max_connections']} connections in use "
                            f"({conns['utilization']:.0%} >= {thresholds.pool_utilization:.0%})", conns))  # fmt: skip
    pool = sample.get("pool") or {}
    if pool.get("requests_waiting", 0) >= thresholds.pool_waiting or pool.get("requests_errors", 0):
        alerts.append(Alert("pool", pool.get("pool_name", "pool"), f"pipeline pool exhausted: {pool.get('requests_waiting', 0)} "
                            f"waiting, {pool.get('requests_errors', 0)} timed out, {pool.get('pool_size')} of {pool.get('pool_max')} in use", pool))  # fmt: skip
    queries = sample["queries"]
    for q in queries.get("slowest_by_mean", []) if queries.get("available") else []:
        if q["mean_ms"] >= thresholds.slow_query_ms:
            alerts.append(Alert("slow_query", q["queryid"], f"mean {q['mean_ms']:.0f} ms >= {thresholds.slow_query_ms:.0f} ms "
                                f"over {q['calls']} calls (max {q['max_ms']:.0f} ms): {q['query']}", q))  # fmt: skip
    xacts = sample["transactions"]
    oldest = xacts["oldest_transaction"]
    if oldest and oldest["age_s"] >= thresholds.transaction_age_s:
        alerts.append(Alert("long_transaction", str(oldest["pid"]), f"transaction of pid {oldest['pid']} open for "
                            f"{oldest['age_s']:.0f} s >= {thresholds.transaction_age_s:.0f} s ({oldest['state']}): {oldest['query']}", oldest))  # fmt: skip
    if len(xacts["lock_waits"]) >= thresholds.lock_waits:
        first = xacts["lock_waits"][0]
        alerts.append(Alert("lock_wait", str(first["pid"]), f"{len(xacts['lock_waits'])} sessions waiting for locks; pid "
                            f"{first['pid']} blocked by {first['blocked_by']} for {first['waiting_s']:.0f} s: {first['query']}",
                            {"waiting": xacts["lock_waits"]}))  # fmt: skip
    if xacts["new_deadlocks"] >= thresholds.deadlocks:
        alerts.append(Alert("deadlock", f"total-{xacts['deadlocks']}", f"{xacts['new_deadlocks']} new deadlocks "
                            f"({xacts['deadlocks']} in all)", {k: xacts[k] for k in ('deadlocks', 'new_deadlocks')}))  # fmt: skip
    ratio = xacts["cache_hit_ratio"]
    if ratio is not None and xacts["blocks_read"] >= 10_000 and ratio < thresholds.cache_hit_ratio:
        alerts.append(Alert("cache_hit_ratio", "database", f"cache hit ratio {ratio:.2%} < {thresholds.cache_hit_ratio:.0%}",
                            {"cache_hit_ratio": ratio, "blocks": xacts["blocks_read"]}))  # fmt: skip
    return alerts


def new_incidents(alerts: list[Alert], open_incidents: set[str]) -> tuple[list[Alert], set[str]]:
    """(alerts for incidents not already open, the incidents open now): an incident that stays open
    alerts once; once it clears, a recurrence alerts again."""
    now_open = {a.incident for a in alerts}
    return [a for a in alerts if a.incident not in open_incidents], now_open


def record(
    conn: psycopg.Connection, sample: dict, alerts: list[Alert], catalog: Catalog | None = None
) -> None:
    """Keep the sample and the newly raised alerts in migration_audit (history for queries and plots);
    the audit tables are created from schema/ the first time they are missing."""
    try:
        _record(conn, sample, alerts)
    except psycopg.errors.UndefinedTable:
        apply_schema(conn, catalog or load_catalog())
        _record(conn, sample, alerts)


def _record(conn: psycopg.Connection, sample: dict, alerts: list[Alert]) -> None:
    with conn.transaction():
        conn.execute(
            "INSERT INTO migration_audit.monitor_samples (sampled_at, sample) VALUES (%s, %s)",
            (sample["sampled_at"], orjson.dumps(sample, default=str).decode()),
        )
        for alert in alerts:
            conn.execute(
                "INSERT INTO migration_audit.monitor_alerts (kind, subject, message, numbers) VALUES (%s, %s, %s, %s)",
                (alert.kind, alert.subject, alert.message, orjson.dumps(alert.numbers, default=str).decode()),
            )
