"""A load generator that plays the app's workload against the migrated PostgreSQL (seed, phase 3).

In:  a connection string, a concurrency, a duration (and an operation cap), a seed.
Out: :func:`run` drives ``concurrency`` threads through one ``psycopg_pool`` for at most ``seconds``:
     profile upserts, tweet batch saves, a user's tweets by date range, full-text search, funnel
     progress updates and referral tracking, in the app's proportions; returns counts per operation,
     each successful operation's latency (seconds, from asking the pool for a connection to the commit)
     and the errors seen. Writes touch only rows of its own users (ids ``load_<n>``), so a run can be
     repeated; they are app writes, logged by the change log like any other.
     ``python -m migration_pipeline.watch.loadgen --concurrency 8 --seconds 30`` runs it on the configured target.
Fails: connection errors propagate; errors of single operations are counted, not raised.
"""

from __future__ import annotations

import argparse
import math
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson
from psycopg_pool import ConnectionPool

WORDS = [
    "data",
    "migration",
    "postgres",
    "launch",
    "coffee",
    "morning",
    "thread",
    "release",
    "python",
    "rust",
    "music",
    "review",
]


@dataclass
class LoadResult:
    seconds: float = 0.0
    operations: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=dict)  # seconds, per operation

    @property
    def total(self) -> int:
        return sum(self.operations.values())

    def percentile(self, q: float, operation: str | None = None) -> float:
        """The ``q``-th percentile (0-100, nearest rank) of the operations' latency in milliseconds, of
        one operation or of all; NaN when none ran."""
        values = sorted(self.latencies.get(operation, []) if operation else
                        (v for vs in self.latencies.values() for v in vs))  # fmt: skip
        if not values:
            return float("nan")
        rank = max(1, math.ceil(q / 100 * len(values)))
        return values[rank - 1] * 1000


def _profile_upsert(cur, rng, user):
    profile = orjson.dumps({"name": rng.choice(WORDS), "followers": rng.randrange(10**5)}).decode()
    cur.execute(
        "INSERT INTO users (id, username, profile_data, last_scraped) VALUES (%s, %s, %s, now())"
        " ON CONFLICT (id) DO UPDATE SET profile_data = EXCLUDED.profile_data, last_scraped = now()",
        (user, user, profile),
    )


def _tweet_batch(cur, rng, user):
    base = rng.randrange(10**9)
    rows = [
        (f"{user}_t{base + i}", user, " ".join(rng.choices(WORDS, k=12)), rng.random() < 0.3,
         orjson.dumps({"likes": rng.randrange(100)}).decode())
        for i in range(20)
    ]  # fmt: skip
    cur.executemany(
        "INSERT INTO tweets (id, user_id, text, created_at, is_reply, metadata)"
        " VALUES (%s, %s, %s, now() - random() * interval '30 days', %s, %s) ON CONFLICT (id) DO NOTHING",
        rows,
    )


def _date_range(cur, rng, user):
    cur.execute(
        "SELECT id, created_at FROM tweets WHERE user_id = %s AND created_at BETWEEN now() - interval '7 days'"
        " AND now() ORDER BY created_at",
        (user,),
    ).fetchall()


def _full_text(cur, rng, user):
    cur.execute(
        "SELECT id FROM tweets WHERE to_tsvector('english', text) @@ plainto_tsquery('english', %s) LIMIT 20",
        (rng.choice(WORDS),),
    ).fetchall()


def _funnel_update(cur, rng, user):
    cur.execute(
        "INSERT INTO funnel_progress (user_id, current_command_index, completed_commands) VALUES (%s, 1, '[\"start\"]')"
        " ON CONFLICT (user_id) DO UPDATE SET current_command_index = funnel_progress.current_command_index + 1,"
        " completed_commands = funnel_progress.completed_commands || to_jsonb(%s::text), last_updated = now()",
        (user, rng.choice(WORDS)),
    )


def _referral(cur, rng, user):
    cur.execute(
        "INSERT INTO referral_tracking (referral_code, referrer_user_id, referred_user_id) VALUES (%s, %s, %s)"
        " ON CONFLICT (referred_user_id) DO NOTHING",
        (f"REF_{user}", user, user),
    )


# the app's mix: mostly reads, then tweet saves and profile updates
OPERATIONS = [
    (_date_range, 30),
    (_full_text, 20),
    (_tweet_batch, 20),
    (_profile_upsert, 15),
    (_funnel_update, 10),
    (_referral, 5),
]


def run(
    conninfo: str, concurrency: int = 4, seconds: float = 10.0, max_operations: int = 1_000_000, seed: int = 1
) -> LoadResult:
    result = LoadResult()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    functions, weights = zip(*OPERATIONS, strict=True)

    def worker(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        user = f"load_{n}"
        with pool.connection() as conn, conn.cursor() as cur:
            _profile_upsert(cur, rng, user)  # its own user first, so its writes have a parent
            conn.commit()
        while time.monotonic() < deadline:
            op = rng.choices(functions, weights)[0]
            began = time.perf_counter()
            try:
                with pool.connection() as conn, conn.cursor() as cur:
                    op(cur, rng, user)
            except Exception as err:  # noqa: BLE001 - counted and reported, the load goes on
                with lock:
                    result.errors[f"{op.__name__}: {type(err).__name__}"] += 1
                continue
            took = time.perf_counter() - began
            name = op.__name__.lstrip("_")
            with lock:
                result.operations[name] += 1
                result.latencies.setdefault(name, []).append(took)
                if result.total >= max_operations:
                    return

    start = time.monotonic()
    with ConnectionPool(
        conninfo, min_size=concurrency, max_size=concurrency, name="loadgen", open=True
    ) as pool:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    result.seconds = time.monotonic() - start
    return result


def main(argv: list[str] | None = None) -> int:
    from ..connect.settings import load_settings
    from ..connect.target import conninfo

    parser = argparse.ArgumentParser(description="Play the app's workload against the configured target.")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    result = run(conninfo(load_settings()), args.concurrency, args.seconds, seed=args.seed)
    print(
        f"{result.total} operations in {result.seconds:.1f} s ({result.total / result.seconds:.0f}/s): {dict(result.operations)}"
    )
    print(f"latency: p50 {result.percentile(50):.1f} ms, p95 {result.percentile(95):.1f} ms")
    if result.errors:
        print(f"errors: {dict(result.errors)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
