"""The app's operations, once per backend: what the app does on SQLite, and the same on the migrated PostgreSQL.

In:  a SQLite file (a copy: never the app's own) or a ``psycopg_pool`` pool on the migrated schema.
Out: :class:`SqliteApp` and :class:`PostgresApp`, the seed's phase-3 adapter operations (:data:`READS`,
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
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
from psycopg_pool import ConnectionPool

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

    def _write(self, statements: Sequence[tuple[str, Sequence]]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for statement, params in statements:
                self.db.execute(statement, params)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def save_profile(self, user_id: str, username: str, profile: dict) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO users (id, username, profile_data, last_scraped) VALUES (?, ?, ?, ?)",
            (user_id, username, orjson.dumps(profile).decode(), _iso(datetime.now(UTC))),
        )

    def save_tweets(self, user_id: str, tweets: Sequence[dict]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany(
                "INSERT OR REPLACE INTO tweets (id, user_id, text, created_at, is_reply, metadata)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(t["id"], user_id, t["text"], _iso(t["created_at"]), int(t["is_reply"]),
                  orjson.dumps(t["metadata"]).decode()) for t in tweets],
            )  # fmt: skip
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

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
        self.db.execute("BEGIN IMMEDIATE")
        try:
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
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def completion_stats(self) -> tuple[int, int]:
        """(users who completed the funnel, users in it who have not)."""
        return self.db.execute(
            "SELECT (SELECT count(*) FROM funnel_completion), (SELECT count(*) FROM funnel_progress p"
            " WHERE NOT EXISTS (SELECT 1 FROM funnel_completion c WHERE c.user_id = p.user_id))"
        ).fetchone()

    def track_referral(self, code: str, referrer: str, referred: str) -> bool:
        """Record that ``referred`` came through ``code`` (once per referred user); True when recorded."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if self.db.execute(
                "SELECT 1 FROM referral_tracking WHERE referred_user_id = ?", (referred,)
            ).fetchone():
                self.db.execute("ROLLBACK")
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
            self.db.execute("COMMIT")
            return True
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

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
        self.db.execute("BEGIN IMMEDIATE")
        try:
            row = self.db.execute(
                "SELECT job_id FROM analysis_queue WHERE status = 'pending' ORDER BY priority DESC, job_id LIMIT 1"
            ).fetchone()
            if row:
                self.db.execute(
                    "UPDATE analysis_queue SET status = 'processing', started_at = ? WHERE job_id = ?",
                    (_iso(datetime.now(UTC)), row[0]),
                )
            self.db.execute("COMMIT")
            return row[0] if row else None
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def job_progress(self, job_id: int) -> None:
        """One more chunk of ``job_id`` done; the job completes with its last chunk."""
        self.db.execute(
            "UPDATE analysis_queue SET processed_chunks = processed_chunks + 1, status = CASE WHEN"
            " processed_chunks + 1 >= total_chunks THEN 'completed' ELSE status END, completed_at = CASE WHEN"
            " processed_chunks + 1 >= total_chunks THEN ? ELSE completed_at END WHERE job_id = ?",
            (_iso(datetime.now(UTC)), job_id),
        )


# PostgreSQL: one statement (or one short transaction) per operation, READ COMMITTED, through the pool.
PG = {
    "save_profile": "INSERT INTO users (id, username, profile_data, last_scraped) VALUES (%s, %s, %s, now())"
    " ON CONFLICT (id) DO UPDATE SET username = EXCLUDED.username, profile_data = EXCLUDED.profile_data,"
    " last_scraped = EXCLUDED.last_scraped",
    "save_tweets": "INSERT INTO tweets (id, user_id, text, created_at, is_reply, metadata)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::boolean[], %s::jsonb[])"
    " ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, text = EXCLUDED.text,"
    " created_at = EXCLUDED.created_at, is_reply = EXCLUDED.is_reply, metadata = EXCLUDED.metadata",
    "tweets_in_range": "SELECT id FROM tweets WHERE user_id = %s AND created_at BETWEEN %s AND %s ORDER BY id",
    "non_reply_tweets": "SELECT id FROM tweets WHERE user_id = %s AND NOT is_reply ORDER BY id",
    "search_tweets": "SELECT id FROM tweets WHERE to_tsvector('english', text) @@ plainto_tsquery('english', %s)"
    " ORDER BY id LIMIT %s",
    "tweets_with_hashtag": "SELECT id FROM tweets WHERE metadata @> jsonb_build_object('hashtags',"
    " jsonb_build_array(%s::text)) ORDER BY id LIMIT %s",
    "popular_users": "SELECT id FROM users WHERE CASE WHEN jsonb_typeof(profile_data -> 'followers') = 'number'"
    " THEN (profile_data ->> 'followers')::numeric >= %s END ORDER BY id LIMIT %s",
    "update_funnel": "INSERT INTO funnel_progress AS f (user_id, current_command_index, completed_commands,"
    " command_responses) VALUES (%(user)s, 1, jsonb_build_array(%(command)s::text),"
    " jsonb_build_object(%(command)s::text, %(response)s::text)) ON CONFLICT (user_id) DO UPDATE SET"
    " current_command_index = f.current_command_index + 1,"
    " completed_commands = f.completed_commands || jsonb_build_array(%(command)s::text),"
    " command_responses = f.command_responses || jsonb_build_object(%(command)s::text, %(response)s::text),"
    " last_updated = now()",
    "completion_stats": "SELECT (SELECT count(*) FROM funnel_completion), (SELECT count(*) FROM funnel_progress p"
    " WHERE NOT EXISTS (SELECT 1 FROM funnel_completion c WHERE c.user_id = p.user_id))",
    "track_referral": "WITH t AS (INSERT INTO referral_tracking (referral_code, referrer_user_id, referred_user_id)"
    " VALUES (%(code)s, %(referrer)s, %(referred)s) ON CONFLICT (referred_user_id) DO NOTHING RETURNING 1),"
    " c AS (INSERT INTO referral_codes AS rc (code, owner_user_id, usage_count) SELECT %(code)s, %(referrer)s, 1"
    " FROM t ON CONFLICT (code) DO UPDATE SET usage_count = rc.usage_count + 1),"
    " u AS (INSERT INTO referral_usage_log (referral_code, used_by_user_id) SELECT %(code)s, %(referred)s FROM t)"
    " SELECT count(*) FROM t",
    "referrer_stats": "SELECT (SELECT count(*) FROM referral_tracking WHERE referrer_user_id = %(r)s),"
    " (SELECT coalesce(sum(usage_count), 0) FROM referral_codes WHERE owner_user_id = %(r)s)",
    "enqueue_job": "INSERT INTO analysis_queue (user_id, total_chunks) VALUES (%s, %s) RETURNING job_id",
    "claim_job": "UPDATE analysis_queue SET status = 'processing', started_at = now() WHERE job_id = ("
    " SELECT job_id FROM analysis_queue WHERE status = 'pending' ORDER BY priority DESC, job_id"
    " FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING job_id",
    "job_progress": "UPDATE analysis_queue SET processed_chunks = processed_chunks + 1, status = CASE WHEN"
    " processed_chunks + 1 >= total_chunks THEN 'completed' ELSE status END, completed_at = CASE WHEN"
    " processed_chunks + 1 >= total_chunks THEN now() ELSE completed_at END WHERE job_id = %s",
}


class PostgresApp:
    """The app on the migrated PostgreSQL, through a shared ``psycopg_pool`` pool (autocommit)."""

    name = "postgresql"

    def __init__(self, pool: ConnectionPool):
        self.pool = pool

    def close(self) -> None:
        pass  # the pool is the caller's

    def _one(self, statement: str, params) -> tuple | None:
        with self.pool.connection() as conn:
            return conn.execute(statement, params).fetchone()

    def _do(self, statement: str, params) -> None:
        with self.pool.connection() as conn:
            conn.execute(statement, params)

    def _ids(self, statement: str, params) -> list[str]:
        with self.pool.connection() as conn:
            return [r[0] for r in conn.execute(statement, params)]

    def save_profile(self, user_id: str, username: str, profile: dict) -> None:
        self._do(PG["save_profile"], (user_id, username, orjson.dumps(profile).decode()))

    def save_tweets(self, user_id: str, tweets: Sequence[dict]) -> None:
        columns = (
            [t["id"] for t in tweets], [user_id] * len(tweets), [t["text"] for t in tweets],
            [t["created_at"] for t in tweets], [bool(t["is_reply"]) for t in tweets],
            [orjson.dumps(t["metadata"]).decode() for t in tweets],
        )  # fmt: skip
        self._do(PG["save_tweets"], columns)

    def tweets_in_range(self, user_id: str, start: datetime, end: datetime) -> list[str]:
        return self._ids(PG["tweets_in_range"], (user_id, start, end))

    def non_reply_tweets(self, user_id: str) -> list[str]:
        return self._ids(PG["non_reply_tweets"], (user_id,))

    def search_tweets(self, term: str) -> list[str]:
        return self._ids(PG["search_tweets"], (term, SEARCH_LIMIT))

    def tweets_with_hashtag(self, tag: str) -> list[str]:
        return self._ids(PG["tweets_with_hashtag"], (tag, SEARCH_LIMIT))

    def popular_users(self, followers: int) -> list[str]:
        return self._ids(PG["popular_users"], (followers, SEARCH_LIMIT))

    def update_funnel(self, user_id: str, command: str, response: str) -> None:
        self._do(PG["update_funnel"], {"user": user_id, "command": command, "response": response})

    def completion_stats(self) -> tuple[int, int]:
        return self._one(PG["completion_stats"], ())

    def track_referral(self, code: str, referrer: str, referred: str) -> bool:
        return (
            self._one(PG["track_referral"], {"code": code, "referrer": referrer, "referred": referred})[0]
            == 1
        )

    def referrer_stats(self, referrer: str) -> tuple[int, int]:
        return self._one(PG["referrer_stats"], {"r": referrer})

    def enqueue_job(self, user_id: str, chunks: int) -> int:
        return self._one(PG["enqueue_job"], (user_id, chunks))[0]

    def claim_job(self) -> int | None:
        row = self._one(PG["claim_job"], ())
        return row[0] if row else None

    def job_progress(self, job_id: int) -> None:
        self._do(PG["job_progress"], (job_id,))
