"""Generate a SQLite database shaped like the Twitter-analysis app's (shared/docs/source-app.md).

In:  a path and sizes (``--users``, ``--tweets``), a seed, a fraction of broken rows, whether to include the
     queue tables the real app never creates, and ``clean`` (``--clean``): no broken row at all, neither
     random nor the fixed ones below, so every row loads (the benchmark's clean source).
Out: a new SQLite file with the app's loose declared types (TEXT ids, JSON, DATETIME, BOOLEAN), both of
     its timestamp habits (``CURRENT_TIMESTAMP`` text and ``toISOString()``), scraped dates in Twitter's
     format and as Unix epochs, 0/1 booleans, ``JSON.stringify`` text, AUTOINCREMENT ids, orphans (the
     referral code ``NO``), and a few broken values of every kind the value rules reject. The same seed
     gives the same file. 1M tweets take well under a minute.
Fails: ``FileExistsError`` when the path exists (it is never overwritten).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from ..catalog import SQLITE_APP_DDL, SQLITE_QUEUE_DDL

WORDS = [
    "the", "a", "data", "migration", "postgres", "sqlite", "launch", "product", "team", "coffee",
    "morning", "great", "thread", "today", "new", "release", "open", "source", "python", "rust",
    "learning", "community", "event", "ship", "build", "bug", "fix", "deploy", "weekend", "music", "café",
    "naïve", "résumé", "東京", "ünïcödé", "🚀", "🎉", "growth", "market", "design", "research", "paper",
    "model", "ai", "ethics", "climate", "football", "election", "space", "rocket", "science", "history",
    "book", "film", "review", "travel", "photo", "garden", "recipe",
]  # fmt: skip
BASE = datetime(2024, 1, 1, tzinfo=UTC)

# Broken values, one list per kind the value rules reject (cycled through deterministically).
BAD_TIMESTAMPS = [
    "yesterday",
    "2024-02-30 10:00:00",
    "2024-13-01T00:00:00Z",
    "03/05/2024 17:21",
    "",
    "Tue Mar 05",
]
BAD_JSON = ["{'name': 'python repr'}", '{"a": NaN}', '{"truncated": [1, 2', "None", '{"x": 1,}', '"\\u0000"']
BAD_BOOLEANS = ["yes", "2", "t", "-1"]


def _sqlite_ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _iso_ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _twitter_ts(moment: datetime) -> str:
    return moment.strftime("%a %b %d %H:%M:%S +0000 %Y")


class _Generator:
    def __init__(self, seed: int, bad_fraction: float, clean: bool = False):
        self.rng = random.Random(seed)
        self.bad_fraction = 0.0 if clean else bad_fraction
        self.clean = clean

    def bad(self) -> bool:
        return self.rng.random() < self.bad_fraction

    def moment(self) -> datetime:
        return BASE + timedelta(
            seconds=self.rng.randrange(0, 300 * 86400), milliseconds=self.rng.randrange(1000)
        )

    def scraped_date(self, forced: int | None = None) -> object:
        """A tweet date as the scraper returned it: any of the accepted formats, or a broken one."""
        if forced is not None:
            return BAD_TIMESTAMPS[forced]
        if self.bad():
            return self.rng.choice(BAD_TIMESTAMPS)
        m = self.moment()
        pick = self.rng.random()
        if pick < 0.6:
            return _iso_ts(m)
        if pick < 0.8:
            return _sqlite_ts(m)
        if pick < 0.9:
            return _twitter_ts(m)
        if pick < 0.95:
            return int(m.timestamp())
        return int(m.timestamp() * 1000)

    def json_text(self, value: object, forced: int | None = None) -> str:
        if forced is not None:
            return BAD_JSON[forced]
        return self.rng.choice(BAD_JSON) if self.bad() else orjson.dumps(value).decode()

    def boolean(self, forced: int | None = None) -> object:
        if forced is not None:
            return BAD_BOOLEANS[forced]
        if self.bad():
            return self.rng.choice(BAD_BOOLEANS)
        return self.rng.choice((0, 1, 0, 0, "true", "false"))

    def words(self, low: int, high: int) -> str:
        return " ".join(self.rng.choices(WORDS, k=self.rng.randint(low, high)))


def _users(g: _Generator, n: int) -> Iterator[tuple]:
    for i in range(n):
        uid = f"u{i}"
        username = f"user_{i}"
        if (1 <= i <= 5 and not g.clean) or g.bad():  # users u1..u5 carry one broken value of each kind
            kind = i - 1 if 1 <= i <= 5 else g.rng.randrange(5)
            if kind == 0:
                username = f"user_{max(i - 1, 0)}"  # duplicate username
            elif kind == 1:
                username = None  # NULL in NOT NULL
            elif kind == 2:
                username = "x" * 300  # over the VARCHAR(255) limit
            elif kind == 3:
                username = f"user_{i}\x00nul"
            else:
                username = b"\xff\xfeuser"  # stored below as TEXT that is not valid UTF-8
        profile = {
            "name": g.words(1, 3),
            "followers": g.rng.randrange(10**6),
            "bio": g.words(3, 12),
            "verified": g.rng.random() < 0.1,
        }
        blob = i == 6 and not g.clean  # u6's picture is a BLOB
        picture = f"https://pbs.example/{uid}.jpg" if not blob else sqlite3.Binary(b"\x89PNG")
        yield (uid, username, g.json_text(profile), picture,
               _iso_ts(g.moment()) if not g.bad() else g.rng.choice(BAD_TIMESTAMPS), _sqlite_ts(g.moment()))  # fmt: skip


def _forced(g: _Generator, i: int, start: int, values: list) -> int | None:
    """Index into ``values`` for the tweets at positions start.. (one broken value of each kind)."""
    return i - start if start <= i < start + len(values) and not g.clean else None


def _tweets(g: _Generator, n: int, users: int) -> Iterator[tuple]:
    for i in range(n):
        owner = g.rng.randrange(users)
        orphan = g.bad() or (i in (40, 41) and not g.clean)
        user_id = f"u{owner}" if not orphan else f"ghost{owner}"  # orphans: their user never existed
        text = g.words(5, 30)
        metadata = {"likes": g.rng.randrange(5000), "retweets": g.rng.randrange(500), "lang": "en",
                    "hashtags": g.rng.sample(WORDS, 2), "ratio": round(g.rng.random(), 6)}  # fmt: skip
        yield (f"t{i}", user_id, text, g.scraped_date(_forced(g, i, 10, BAD_TIMESTAMPS)), f"https://x.com/i/status/{i}",
               g.boolean(_forced(g, i, 30, BAD_BOOLEANS)), g.json_text(metadata, _forced(g, i, 20, BAD_JSON)),
               _sqlite_ts(g.moment()))  # fmt: skip


def generate(
    path: Path,
    *,
    users: int = 1_000,
    tweets: int = 10_000,
    seed: int = 7,
    bad_fraction: float = 0.002,
    with_queue: bool = False,
    journal_mode: str = "wal",
    clean: bool = False,
) -> Path:
    """Write a new app-shaped database at ``path``; see module doc."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; the generator never overwrites a database")
    path.parent.mkdir(parents=True, exist_ok=True)
    g = _Generator(seed, bad_fraction, clean)
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        db.executescript(SQLITE_APP_DDL + (SQLITE_QUEUE_DDL if with_queue else ""))
        with db:
            _fill(db, g, users, tweets, with_queue)
        db.execute(f"PRAGMA journal_mode = {journal_mode}")
    finally:
        db.close()
    return path


def _fill(db: sqlite3.Connection, g: _Generator, users: int, tweets: int, with_queue: bool) -> None:
    rows = list(_users(g, users))
    # Invalid UTF-8 must be stored as TEXT (as a buggy writer would), not as a BLOB.
    plain = [r for r in rows if not isinstance(r[1], bytes)]
    db.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)", plain)
    for r in (r for r in rows if isinstance(r[1], bytes)):
        db.execute("INSERT INTO users VALUES (?, CAST(? AS TEXT), ?, ?, ?, ?)", r)
    db.executemany("INSERT INTO tweets VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _tweets(g, tweets, users))
    analysed = range(0, users, 3)
    db.executemany(
        "INSERT INTO personality_analysis VALUES (?, ?, ?, ?, ?, ?)",
        (
            (
                f"pa{i}",
                f"u{i}",
                g.json_text({"openness": g.rng.random(), "humor": g.rng.random()}),
                g.json_text(g.rng.sample(WORDS, 3)),
                g.json_text({"tone": "casual", "emoji_rate": 0.2}),
                _iso_ts(g.moment()),
            )  # fmt: skip
            for i in analysed
        ),
    )
    db.executemany(
        "INSERT INTO funnel_progress VALUES (?, ?, ?, ?, ?)",
        (
            (
                f"u{i}",
                g.rng.randrange(6) if not g.bad() else "step three",
                g.json_text(["start", "analyze"][: g.rng.randrange(3)]),
                g.json_text({"start": "ok"}),
                _sqlite_ts(g.moment()),
            )  # fmt: skip
            for i in range(0, users, 2)
        ),
    )
    db.executemany(
        "INSERT INTO funnel_completion VALUES (?, ?, ?)",
        (
            (f"u{i}", _iso_ts(g.moment()), g.json_text({"score": g.rng.randrange(100)}))
            for i in range(0, users, 5)
        ),
    )
    codes = [(f"REF{i}", f"u{i}", g.rng.randrange(5), _sqlite_ts(g.moment())) for i in range(0, users, 4)]
    db.executemany("INSERT INTO referral_codes VALUES (?, ?, ?, ?)", codes)
    referred = [
        (None, c[0], c[1], f"u{(i * 7 + 1) % users}", _iso_ts(g.moment())) for i, c in enumerate(codes)
    ]
    if len(referred) > 2 and not g.clean:
        referred.append(
            (None, codes[0][0], codes[0][1], referred[1][3], _iso_ts(g.moment()))
        )  # UNIQUE breach
    db.executemany("INSERT INTO referral_tracking VALUES (?, ?, ?, ?, ?)", referred)
    usage = [(None, c[0], f"u{(i * 3) % users}", _sqlite_ts(g.moment())) for i, c in enumerate(codes)]
    if not g.clean:  # declined referrals: orphans
        usage += [(None, "NO", f"u{i}", _sqlite_ts(g.moment())) for i in range(min(users, 5))]
    db.executemany("INSERT INTO referral_usage_log VALUES (?, ?, ?, ?)", usage)
    if with_queue:
        statuses = ["pending", "processing", "completed", "failed"]
        jobs = [(None, f"u{i}", statuses[i % 4] if not g.bad() else "stuck", g.rng.randrange(3), 4, i % 5,
                 _sqlite_ts(g.moment()), _iso_ts(g.moment()), None, None) for i in range(0, users, 10)]  # fmt: skip
        if not g.clean:  # a CHECK breach
            jobs.append((None, "u0", "cancelled", 0, 4, 0, _sqlite_ts(g.moment()), None, None, None))
        db.executemany("INSERT INTO analysis_queue VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", jobs)
        chunks = [(None, j, c, 25, statuses[(j + c) % 4], _iso_ts(g.moment()), None,
                   g.json_text({"chunk": c}) if c % 2 else None, None)
                  for j in range(1, len(jobs) + 1) for c in range(2)]  # fmt: skip
        if not g.clean:  # an orphan job
            chunks.append((None, 10**6, 0, 1, "pending", None, None, None, None))
        db.executemany("INSERT INTO analysis_chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", chunks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/twitter.db"))
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--tweets", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--bad-fraction", type=float, default=0.002)
    parser.add_argument(
        "--with-queue", action="store_true", help="also create analysis_queue/analysis_chunks"
    )
    parser.add_argument("--journal-mode", choices=("wal", "delete"), default="wal")
    parser.add_argument("--clean", action="store_true", help="no broken rows at all (every row loads)")
    args = parser.parse_args(argv)
    generate(
        args.out,
        users=args.users,
        tweets=args.tweets,
        seed=args.seed,
        bad_fraction=args.bad_fraction,
        with_queue=args.with_queue,
        journal_mode=args.journal_mode,
        clean=args.clean,
    )
    print(f"wrote {args.out} ({args.users} users, {args.tweets} tweets)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
