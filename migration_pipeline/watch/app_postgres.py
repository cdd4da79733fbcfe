"""The app's operations on the migrated PostgreSQL: the twin of app_ops.SqliteApp, statement for statement.

In:  a ``psycopg_pool`` pool (autocommit) on the migrated schema.
Out: :class:`PostgresApp`: the same operations and answers as ``app_ops.SqliteApp``, each one statement (one
     round trip, one commit) at READ COMMITTED: JSONB operators and ``||`` merges, ``ON CONFLICT`` upserts,
     the GIN full-text index, ``FOR UPDATE SKIP LOCKED``; :data:`PG` holds the statements (the job explains
     the read ones).
Fails: psycopg errors propagate (psycopg_pool's ``PoolTimeout`` when the pool stays exhausted).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import orjson
from psycopg_pool import ConnectionPool

from .app_ops import SEARCH_LIMIT

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
