"""The app's operations, once per backend: what the app does on SQLite, and the same on the migrated PostgreSQL.

In:  a SQLite file (a copy: never the app's own) or a ``psycopg_pool`` pool on the migrated schema.
Out: :class:`SqliteApp` here and ``app_postgres.PostgresApp``, the seed's phase-3 adapter operations (:data:`READS`,
     :data:`WRITES`) with the same signatures and the same answers on the same data:
     - SQLite as the app does it: JSON as text, ``INSERT OR REPLACE``, read-modify-write of JSON inside
       ``BEGIN IMMEDIATE``, no index but the primary keys (the app creates none), text search with
       ``LIKE`` (the app has no FTS5 table; adding one is an app change, so the comparison is with what
       it can run today), timestamps compared through ``datetime()`` (both of its formats);
     - PostgreSQL as the migrated schema allows: JSONB operators, one atomic statement per update at READ
       COMMITTED (the funnel's JSON merge included: no lost update, tested), the GIN full-text index,
       ``FOR UPDATE SKIP LOCKED`` to claim a job, a connection pool.
     Answers are ids (sorted) and counts, so both backends can be compared exactly.
Fails: the backends' errors (``sqlite3.OperationalError: database is locked``, psycopg errors) propagate.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

import orjson

READS = ("tweets_in_range", "non_reply_tweets", "search_tweets", "tweets_with_hashtag", "popular_users",
         "completion_stats", "referrer_stats")  # fmt: skip
WRITES = ("save_profile", "save_tweets", "update_funnel", "track_referral", "enqueue_job", "claim_job",
          "job_progress")  # fmt: skip
SEARCH_LIMIT = 20


def _iso(moment: datetime) -> str:
    """The app's ``toISOString()``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class SqliteApp:
    """The app on its SQLite file: one connection per thread, as its workers have; 5 s busy timeout."""

    name = "sqlite"

    def __init__(self, path, busy_timeout_ms: int = 5000):
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _immediate(self) -> Iterator[None]:
        """One write transaction, as the app takes it: SQLite's writer lock from the start."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def save_profile(self, user_id: str, username: str, profile: dict) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO users (id, username, profile_data, last_scraped) VALUES (?, ?, ?, ?)",
            (user_id, username, orjson.dumps(profile).decode(), _iso(datetime.now(UTC))),
        )

    def save_tweets(self, user_id: str, tweets: Sequence[dict]) -> None:
        with self._immediate():
            self.db.executemany(
                "INSERT OR REPLACE INTO tweets (id, user_id, text, created_at, is_reply, metadata)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(t["id"], user_id, t["text"], _iso(t["created_at"]), int(t["is_reply"]),
                  orjson.dumps(t["metadata"]).decode()) for t in tweets],
            )  # fmt: skip

    def tweets_in_range(self, user_id: str, start: datetime, end: datetime) -> list[str]:
        rows = self.db.execute(
            "SELECT id FROM tweets WHERE user_id = ? AND datetime(created_at) BETWEEN datetime(?) AND datetime(?)"
            " ORDER BY id",
            (user_id, _iso(start), _iso(end)),
        )
        return [r[0] for r in rows]

    def non_reply_tweets(self, user_id: str) -> list[str]:
        rows = self.db.execute(
            "SELECT id FROM tweets WHERE user_id = ? AND is_reply = 0 ORDER BY id", (user_id,)
        )
        return [r[0] for r in rows]

    def search_tweets(self, term: str) -> list[str]:
        rows = self.db.execute(
            "SELECT id FROM tweets WHERE text LIKE ? ORDER BY id LIMIT ?", (f"%{term}%", SEARCH_LIMIT)
        )
        return [r[0] for r in rows]

    def tweets_with_hashtag(self, tag: str) -> list[str]:
        """JSON: tweets whose metadata's hashtags hold ``tag`` (the first 20 by id)."""
        rows = self.db.execute(
            "SELECT id FROM tweets WHERE CASE WHEN json_valid(metadata) THEN EXISTS (SELECT 1 FROM"
            " json_each(metadata, '$.hashtags') WHERE value = ?) END ORDER BY id LIMIT ?",
            (tag, SEARCH_LIMIT),
        )
        return [r[0] for r in rows]

    def popular_users(self, followers: int) -> list[str]:
        """JSON: users whose profile has at least ``followers`` followers (the first 20 by id)."""
        rows = self.db.execute(
            "SELECT id FROM users WHERE CASE WHEN json_valid(profile_data) AND json_type(profile_data,"
            " '$.followers') IN ('integer', 'real') THEN json_extract(profile_data, '$.followers') >= ? END"
            " ORDER BY id LIMIT ?",
            (followers, SEARCH_LIMIT),
        )
        return [r[0] for r in rows]

    def update_funnel(self, user_id: str, command: str, response: str) -> None:
        """The app's read-modify-write of the JSON, made safe by SQLite's one writer at a time."""
        with self._immediate():
            row = self.db.execute(
                "SELECT current_command_index, completed_commands, command_responses FROM funnel_progress"
                " WHERE user_id = ?",
                (user_id,),
            ).fetchone()
            index, done, responses = row if row else (0, "[]", "{}")
            done, responses = orjson.loads(done), orjson.loads(responses)
            done.append(command)
            responses[command] = response
            self.db.execute(
                "INSERT OR REPLACE INTO funnel_progress (user_id, current_command_index, completed_commands,"
                " command_responses, last_updated) VALUES (?, ?, ?, ?, ?)",
                (user_id, index + 1, orjson.dumps(done).decode(), orjson.dumps(responses).decode(),
                 _iso(datetime.now(UTC))),
            )  # fmt: skip

    def completion_stats(self) -> tuple[int, int]:
        """(users who completed the funnel, users in it who have not)."""
        return self.db.execute(
            "SELECT (SELECT count(*) FROM funnel_completion), (SELECT count(*) FROM funnel_progress p"
            " WHERE NOT EXISTS (SELECT 1 FROM funnel_completion c WHERE c.user_id = p.user_id))"
        ).fetchone()

    def track_referral(self, code: str, referrer: str, referred: str) -> bool:
        """Record that ``referred`` came through ``code`` (once per referred user); True when recorded."""
        with self._immediate():
            if self.db.execute(
                "SELECT 1 FROM referral_tracking WHERE referred_user_id = ?", (referred,)
            ).fetchone():
                return False
            self.db.execute(
                "INSERT INTO referral_tracking (referral_code, referrer_user_id, referred_user_id) VALUES (?, ?, ?)",
                (code, referrer, referred),
            )
            self.db.execute(
                "INSERT OR IGNORE INTO referral_codes (code, owner_user_id) VALUES (?, ?)", (code, referrer)
            )
            self.db.execute("UPDATE referral_codes SET usage_count = usage_count + 1 WHERE code = ?", (code,))
            self.db.execute(
                "INSERT INTO referral_usage_log (referral_code, used_by_user_id) VALUES (?, ?)",
                (code, referred),
            )
            return True

    def referrer_stats(self, referrer: str) -> tuple[int, int]:
        """(users ``referrer`` referred, uses of the codes they own)."""
        return self.db.execute(
            "SELECT (SELECT count(*) FROM referral_tracking WHERE referrer_user_id = ?),"
            " (SELECT coalesce(sum(usage_count), 0) FROM referral_codes WHERE owner_user_id = ?)",
            (referrer, referrer),
        ).fetchone()

    def enqueue_job(self, user_id: str, chunks: int) -> int:
        cur = self.db.execute(
            "INSERT INTO analysis_queue (user_id, status, total_chunks, processed_chunks, created_at)"
            " VALUES (?, 'pending', ?, 0, ?)",
            (user_id, chunks, _iso(datetime.now(UTC))),
        )
        return cur.lastrowid

    def claim_job(self) -> int | None:
        """The next pending job (highest priority, oldest), now processing; None when none waits."""
        with self._immediate():
            row = self.db.execute(
                "SELECT job_id FROM analysis_queue WHERE status = 'pending' ORDER BY priority DESC, job_id LIMIT 1"
            ).fetchone()
            if row:
                self.db.execute(
                    "UPDATE analysis_queue SET status = 'processing', started_at = ? WHERE job_id = ?",
                    (_iso(datetime.now(UTC)), row[0]),
                )
            return row[0] if row else None

    def job_progress(self, job_id: int) -> None:
        """One more chunk of ``job_id`` done; the job completes with its last chunk."""
        self.db.execute(
            "UPDATE analysis_queue SET processed_chunks = processed_chunks + 1, status = CASE WHEN"
            " processed_chunks + 1 >= total_chunks THEN 'completed' ELSE status END, completed_at = CASE WHEN"
            " processed_chunks + 1 >= total_chunks THEN ? ELSE completed_at END WHERE job_id = ?",
            (_iso(datetime.now(UTC)), job_id),
        )
