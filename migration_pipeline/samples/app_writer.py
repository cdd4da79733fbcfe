"""The app writing its SQLite file, as it does while the migration runs (shared/docs/source-app.md).

In:  an app-shaped SQLite file (see sample_data), a duration or a number of changes, a seed.
Out: :func:`write` changes rows across tables the way the app does, each change its own short
     transaction: ``INSERT OR REPLACE`` of users and tweets (a new rowid for an existing key), updates in
     place (funnel progress, tweet texts, profile JSON), deletes (tweets, funnel completions), new
     tweets and referral uses (AUTOINCREMENT ids), timestamps in both of the app's habits, and now and
     then a broken JSON value. Returns how many changes it made. ``python -m migration_pipeline.samples.app_writer
     --db PATH --seconds 10`` runs it from a shell (tests and the benchmark start it as a process).
Fails: sqlite3 errors propagate (a busy database is waited for up to 30 s per change). SIGINT stops it
     cleanly (the change in flight rolled back) and it still reports its count.
"""

from __future__ import annotations

import argparse
import random
import signal
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path


def _now(rng: random.Random) -> str:
    moment = datetime.now(UTC)
    if rng.random() < 0.5:
        return moment.strftime("%Y-%m-%d %H:%M:%S")  # DEFAULT CURRENT_TIMESTAMP
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"  # toISOString()


def _some(db: sqlite3.Connection, table: str, column: str, rng: random.Random):
    """A random existing value of ``column`` (by rowid, cheap on large tables), or None."""
    top = db.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0]
    if not top:
        return None
    row = db.execute(
        f"SELECT {column} FROM {table} WHERE rowid >= ? LIMIT 1", (rng.randint(1, top),)
    ).fetchone()
    return row[0] if row else None


KINDS = range(8)
TWEET_KINDS = (1, 2, 3)  # new tweets, tweets replaced, tweets deleted


def _change(db: sqlite3.Connection, rng: random.Random, serial: int, kinds) -> None:
    kind = rng.choice(kinds)
    user = _some(db, "users", "id", rng)
    if kind == 0:  # a profile re-scraped: INSERT OR REPLACE, the row gets a new rowid
        db.execute(
            "INSERT OR REPLACE INTO users (id, username, profile_data, profile_picture_url, last_scraped, created_at)"
            " SELECT id, username, ?, profile_picture_url, ?, created_at FROM users WHERE id = ?",
            (f'{{"followers":{rng.randint(0, 10**6)},"bio":"re-scraped {serial}"}}', _now(rng), user),
        )
    elif kind == 1:  # new tweets of a user, sometimes with a broken metadata value
        metadata = '{"likes":' + str(rng.randint(0, 999)) + "}" if rng.random() > 0.05 else "{broken"
        db.execute(
            "INSERT INTO tweets (id, user_id, text, created_at, url, is_reply, metadata, created_in_db)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (f"w{serial}-{rng.randrange(10**9)}", user, f"live tweet {serial} about music", _now(rng),
             None, rng.randint(0, 1), metadata, _now(rng)),
        )  # fmt: skip
    elif kind == 2:  # a tweet re-scraped: INSERT OR REPLACE with edited text
        tweet = _some(db, "tweets", "id", rng)
        db.execute(
            "INSERT OR REPLACE INTO tweets (id, user_id, text, created_at, url, is_reply, metadata, created_in_db)"
            " SELECT id, user_id, text || ' (edited)', created_at, url, is_reply, metadata, created_in_db"
            " FROM tweets WHERE id = ?",
            (tweet,),
        )
    elif kind == 3:  # a tweet deleted
        db.execute("DELETE FROM tweets WHERE id = ?", (_some(db, "tweets", "id", rng),))
    elif kind == 4:  # funnel progress updated in place
        db.execute(
            "UPDATE funnel_progress SET current_command_index = current_command_index + 1, last_updated = ?"
            " WHERE user_id = ?",
            (_now(rng), _some(db, "funnel_progress", "user_id", rng)),
        )
    elif kind == 5:  # a referral used (AUTOINCREMENT id); sometimes declined: code 'NO', an orphan
        code = _some(db, "referral_codes", "code", rng) if rng.random() > 0.2 else "NO"
        db.execute(
            "INSERT INTO referral_usage_log (referral_code, used_by_user_id, used_at) VALUES (?, ?, ?)",
            (code, user, _now(rng)),
        )
    elif kind == 6:  # a funnel completion withdrawn
        db.execute(
            "DELETE FROM funnel_completion WHERE user_id = ?",
            (_some(db, "funnel_completion", "user_id", rng),),
        )
    else:  # a new user
        db.execute(
            "INSERT OR REPLACE INTO users (id, username, profile_data, created_at) VALUES (?, ?, ?, ?)",
            (f"live{serial}", f"live_user_{serial}", '{"bio":"new"}', _now(rng)),
        )


def write(path: Path, *, changes: int | None = None, seconds: float | None = None, seed: int = 7,
          pause: float = 0.0, kinds=KINDS) -> int:  # fmt: skip
    """Make ``changes`` changes, or change for ``seconds``; returns how many were made. ``kinds`` picks
    among the changes (numbered as in ``_change``; ``TWEET_KINDS`` touches tweets only)."""
    rng = random.Random(seed)
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    deadline = time.monotonic() + seconds if seconds is not None else None
    made = 0
    try:
        while (changes is None or made < changes) and (deadline is None or time.monotonic() < deadline):
            db.execute("BEGIN IMMEDIATE")
            try:
                _change(db, rng, made, tuple(kinds))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            made += 1
            if pause:
                time.sleep(pause)
    except KeyboardInterrupt:  # SIGINT: stop cleanly after rolling back the change in flight
        pass
    finally:
        db.close()
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--changes", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between changes")
    args = parser.parse_args(argv)
    if args.changes is None and args.seconds is None:
        parser.error("give --changes or --seconds")
    # SIGINT stops it (see write), also when started from a shell's background job, which starts its
    # children with SIGINT ignored (a suite run as `.ci/run &` timed out waiting for the writer to stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    made = write(args.db, changes=args.changes, seconds=args.seconds, seed=args.seed, pause=args.pause)
    print(f"{made} changes", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
