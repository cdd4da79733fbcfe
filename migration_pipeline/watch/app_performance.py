"""The app's workload on SQLite and on the migrated PostgreSQL, side by side, recorded.

In:  the settings (the app's SQLite file, the target server), the concurrency levels, a warm-up and a
     measured time per level, a seed, a working directory.
Out: :func:`run` copies the app's file (SQLite's online backup: the original is never written) and loads
     that very copy with the migration's own loader into a scratch database on the target's server (so
     both backends hold the same data, and the real target is never written by the workload); then, per
     concurrency, plays the workload (app_workload.py) on the SQLite copy and on PostgreSQL in turn;
     records one row per backend, operation and concurrency in ``migration_audit.app_performance`` of the
     target; drops the scratch database. Returns the :class:`Measurement` rows and the plan of each
     PostgreSQL statement (:func:`plans`).
Fails: :class:`~migration_pipeline.move.source.SourceError` for a source that cannot be copied,
     ``TargetError`` for a server that refuses the scratch database (CREATEDB), psycopg errors otherwise.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import uuid
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from ..catalog import load_catalog
from ..connect.settings import Settings
from ..connect.target import apply_schema, connect, conninfo
from ..move.load import load_all
from ..move.source import Snapshot, take_snapshot
from .app_ops import READS, WRITES, SqliteApp
from .app_postgres import PG, PostgresApp
from .app_workload import Dataset, measure

LEVELS = (1, 4, 16)


@dataclass(frozen=True)
class Measurement:
    backend: str
    operation: str
    concurrency: int
    ops: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    seconds: float
    error_kinds: dict


def _wal(path: Path) -> bool:
    """The file is in WAL mode (its header's read/write versions are 2)."""
    with open(path, "rb") as handle:
        header = handle.read(20)
    return len(header) == 20 and header[18] == 2


def dataset(conn: psycopg.Connection, users: int = 2000) -> Dataset:
    """Users with tweets (as loaded, so both backends have them) and the middle 90% of the tweets' dates."""
    rows = conn.execute(
        "SELECT u.id, u.username FROM users u WHERE EXISTS (SELECT 1 FROM tweets t WHERE t.user_id = u.id)"
        " ORDER BY u.id LIMIT %s",
        (users,),
    ).fetchall()
    first, last = conn.execute(
        "SELECT percentile_disc(0.05) WITHIN GROUP (ORDER BY created_at),"
        " percentile_disc(0.95) WITHIN GROUP (ORDER BY created_at) FROM tweets"
    ).fetchone()
    if not rows or first is None:
        raise ValueError("the source holds no user with tweets: nothing to play the app's workload on")
    return Dataset(users=[tuple(r) for r in rows], first=first, last=last)


def plans(conn: psycopg.Connection, data: Dataset) -> dict[str, str]:
    """The plan of every PostgreSQL statement with typical arguments: EXPLAIN (ANALYZE, BUFFERS) of the
    reads; of the writes EXPLAIN alone (planned, not executed: the scratch data stays as measured)."""
    (user, name), (start, end) = data.users[0], (data.first, data.last)
    args = {
        "tweets_in_range": (user, start, end),
        "non_reply_tweets": (user,),
        "search_tweets": (data.words[0], 20),
        "tweets_with_hashtag": (data.words[0], 20),
        "popular_users": (900_000, 20),
        "completion_stats": (),
        "referrer_stats": {"r": user},
        "save_profile": (user, name, '{"name": "x"}'),
        "save_tweets": (["plan-1"], [user], ["text"], [start], [False], ['{"likes": 1}']),
        "update_funnel": {"user": user, "command": "step1", "response": "ok"},
        "track_referral": {"code": "PLAN", "referrer": user, "referred": user},
        "enqueue_job": (user, 3),
        "claim_job": (),
        "job_progress": (1,),
    }
    found = {}
    for op in (*READS, *WRITES):
        how = "ANALYZE, BUFFERS, COSTS OFF" if op in READS else "COSTS OFF"
        rows = conn.execute(sql.SQL(f"EXPLAIN ({how}) ") + sql.SQL(PG[op]), args[op])
        found[op if op in READS else f"{op} (planned, not executed)"] = "\n".join(r[0] for r in rows)
    return found


def record(conn: psycopg.Connection, run_id: str, rows: list[Measurement]) -> None:
    with conn.transaction():
        for m in rows:
            conn.execute(
                "INSERT INTO migration_audit.app_performance (run_id, backend, operation, concurrency, ops,"
                " errors, p50_ms, p95_ms, p99_ms, seconds, error_kinds)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (run_id, m.backend, m.operation, m.concurrency, m.ops, m.errors, m.p50_ms, m.p95_ms,
                 m.p99_ms, m.seconds, psycopg.types.json.Jsonb(m.error_kinds)),
            )  # fmt: skip


def _rows(backend: str, concurrency: int, seconds: float, stats) -> list[Measurement]:
    return [
        Measurement(backend, s.operation, concurrency, s.ops, sum(s.errors.values()), s.percentile(50),
                    s.percentile(95), s.percentile(99), seconds, dict(s.errors))
        for s in stats.values()
    ]  # fmt: skip


def run(
    settings: Settings,
    workdir: Path,
    run_id: str,
    levels=LEVELS,
    seconds: float = 10.0,
    warmup: float = 2.0,
    seed: int = 1,
    log=print,
) -> tuple[list[Measurement], dict[str, str]]:
    """See module doc. ``log`` gets a line per phase."""
    workdir.mkdir(parents=True, exist_ok=True)
    copy = workdir / f"app-performance-{run_id[:8]}.db"
    take_snapshot(settings.sqlite_path, copy)  # a copy: the workload never writes the app's file
    if _wal(settings.sqlite_path):  # the app's journal mode, which the copy lost
        with closing(sqlite3.connect(copy)) as db:
            db.execute("PRAGMA journal_mode = WAL")
    scratch = dataclasses.replace(settings, database=f"app_perf_{uuid.uuid4().hex[:10]}")
    rows: list[Measurement] = []
    try:
        log(f"loading the copy into the scratch database {scratch.database}")
        with connect(scratch) as conn, Snapshot(copy) as snap:
            load_all(conn, snap, load_catalog(), f"app-performance-{run_id}")
            conn.execute("VACUUM ANALYZE")
            data = dataset(conn)
        for level in levels:
            log(f"concurrency {level}: SQLite")
            stats = measure(lambda n: SqliteApp(copy), data, level, seconds, warmup, seed)
            rows += _rows(SqliteApp.name, level, seconds, stats)
            log(f"concurrency {level}: PostgreSQL")
            with ConnectionPool(
                conninfo(scratch), min_size=level, max_size=level, kwargs={"autocommit": True}, open=True
            ) as pool:
                stats = measure(lambda n, pool=pool: PostgresApp(pool), data, level, seconds, warmup, seed)
            rows += _rows(PostgresApp.name, level, seconds, stats)
        with connect(scratch) as conn:
            explained = plans(conn, data)
    finally:
        for leftover in workdir.glob(copy.name + "*"):
            leftover.unlink(missing_ok=True)
        with connect(settings) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch.database))
            )
    with connect(settings) as conn:
        apply_schema(conn, load_catalog())  # the audit tables, on a target never migrated too
        record(conn, run_id, rows)
    return rows, explained
