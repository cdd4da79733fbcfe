"""The app's workload, timed on one backend at one concurrency: operations, errors, latency percentiles.

In:  a factory of one backend's app (app_ops.py: one per worker thread for SQLite, one pool for all on
     PostgreSQL), the data to draw arguments from (:class:`Dataset`: real user ids and usernames, the
     span of the tweets' dates, search words), a concurrency, a warm-up and a measured time, a seed.
Out: :func:`measure` runs ``concurrency`` threads, each drawing operations in the app's proportions
     (:data:`MIX`: reads most, then tweet saves, profile and funnel updates, referrals and the analysis
     queue) for the warm-up (not recorded) and then for the measured time; returns one
     :class:`OperationStats` per operation (operations done, errors by kind, p50/p95/p99 in ms).
Fails: never for an operation's error (counted: ``database is locked`` on SQLite is the app's reality);
     the factory's errors propagate.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

MIX = {
    "tweets_in_range": 20,
    "non_reply_tweets": 10,
    "search_tweets": 10,
    "tweets_with_hashtag": 5,
    "popular_users": 3,
    "completion_stats": 3,
    "referrer_stats": 4,
    "save_profile": 10,
    "save_tweets": 15,
    "update_funnel": 12,
    "track_referral": 4,
    "enqueue_job": 4,
    "claim_job": 4,
    "job_progress": 4,
}
SEARCH_WORDS = ("data", "migration", "python", "rocket", "garden", "football", "climate", "recipe")
# the app's tweets carry two of about 60 hashtags: new tweets match the JSON queries as often as old ones
HASHTAGS = SEARCH_WORDS + tuple(f"topic{n}" for n in range(52))


@dataclass(frozen=True)
class Dataset:
    users: list[tuple[str, str]]  # (id, username) of users who have tweets
    first: datetime  # the span of the tweets' dates
    last: datetime
    words: tuple[str, ...] = SEARCH_WORDS


@dataclass
class OperationStats:
    operation: str
    ops: int = 0
    errors: Counter = field(default_factory=Counter)  # "ErrorType: message" -> count
    latencies_ms: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile of the latencies (ms); None when nothing ran."""
        values = sorted(self.latencies_ms)
        if not values:
            return None
        return values[max(1, math.ceil(q / 100 * len(values))) - 1]


class _Worker:
    """One of the app's workers: its own random draws, tweet ids and jobs."""

    def __init__(self, app, data: Dataset, n: int, seed: int):
        self.app, self.data, self.n = app, data, n
        self.rng = random.Random(seed * 1000 + n)
        self.tweets = 0
        self.jobs: list[int] = []

    def user(self) -> tuple[str, str]:
        return self.rng.choice(self.data.users)

    def call(self, operation: str) -> None:
        app, rng = self.app, self.rng
        if operation == "tweets_in_range":
            span = max((self.data.last - self.data.first).days - 30, 1)
            start = self.data.first + timedelta(days=rng.randrange(span))
            app.tweets_in_range(self.user()[0], start, start + timedelta(days=30))
        elif operation == "non_reply_tweets":
            app.non_reply_tweets(self.user()[0])
        elif operation == "search_tweets":
            app.search_tweets(rng.choice(self.data.words))
        elif operation == "tweets_with_hashtag":
            app.tweets_with_hashtag(rng.choice(self.data.words))
        elif operation == "popular_users":
            app.popular_users(rng.randrange(500_000, 1_000_000))
        elif operation == "completion_stats":
            app.completion_stats()
        elif operation == "referrer_stats":
            app.referrer_stats(self.user()[0])
        elif operation == "save_profile":
            uid, name = self.user()
            app.save_profile(uid, name, {"name": name, "followers": rng.randrange(10**5), "bio": "perf"})
        elif operation == "save_tweets":
            app.save_tweets(self.user()[0], [self._tweet() for _ in range(20)])
        elif operation == "update_funnel":
            app.update_funnel(self.user()[0], f"step{rng.randrange(8)}", rng.choice(self.data.words))
        elif operation == "track_referral":
            (referrer, _), (referred, _) = self.user(), self.user()
            app.track_referral(f"PERF_{referrer}", referrer, referred)
        elif operation == "enqueue_job":
            self.jobs.append(app.enqueue_job(self.user()[0], 3))
        elif operation == "claim_job":
            app.claim_job()
        elif operation == "job_progress":
            if not self.jobs:
                self.jobs.append(app.enqueue_job(self.user()[0], 3))
            app.job_progress(self.rng.choice(self.jobs))
        else:
            raise ValueError(f"unknown operation {operation}")

    def _tweet(self) -> dict:
        self.tweets += 1
        moment = self.data.first + timedelta(
            seconds=self.rng.randrange(max(int((self.data.last - self.data.first).total_seconds()), 1))
        )
        return {
            "id": f"perf-{self.n}-{self.tweets}-{self.rng.randrange(10**9)}",
            "text": " ".join(self.rng.choices(self.data.words, k=12)),
            "created_at": moment.replace(microsecond=0),
            "is_reply": self.rng.random() < 0.3,
            "metadata": {
                "likes": self.rng.randrange(5000),
                "retweets": self.rng.randrange(500),
                "lang": "en",
                "hashtags": self.rng.sample(HASHTAGS, 2),
            },  # fmt: skip
        }


def measure(
    make_app: Callable[[int], object],
    data: Dataset,
    concurrency: int,
    seconds: float,
    warmup: float,
    seed: int = 1,
    mix: dict[str, int] | None = None,
) -> dict[str, OperationStats]:
    """Run the workload (see module doc); ``make_app(n)`` gives worker ``n`` its app (and is closed after)."""
    mix = mix or MIX
    names, weights = list(mix), list(mix.values())
    stats = {name: OperationStats(name) for name in names}
    lock = threading.Lock()
    start = time.monotonic()
    recording, deadline = start + warmup, start + warmup + seconds
    apps = [make_app(n) for n in range(concurrency)]

    def work(n: int) -> None:
        worker = _Worker(apps[n], data, n, seed)
        while (now := time.monotonic()) < deadline:
            operation = worker.rng.choices(names, weights)[0]
            began = time.perf_counter()
            try:
                worker.call(operation)
            except Exception as err:  # noqa: BLE001 - an operation's error is counted, the workload goes on
                if now >= recording:
                    with lock:
                        stats[operation].errors[f"{type(err).__name__}: {str(err).splitlines()[0][:80]}"] += 1
                continue
            took = (time.perf_counter() - began) * 1000
            if now >= recording:
                with lock:
                    stats[operation].ops += 1
                    stats[operation].latencies_ms.append(took)

    threads = [threading.Thread(target=work, args=(n,), name=f"app-{n}") for n in range(concurrency)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for app in apps:
            app.close()
    return stats
