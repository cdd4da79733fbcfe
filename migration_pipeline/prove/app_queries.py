"""The app's own queries, answered on both sides (the seed's phase 4: behaviour parity).

In:  a :class:`~migration_pipeline.prove.outcome.Subject` with the snapshot the tables were loaded from, open.
Out: one :class:`~migration_pipeline.prove.outcome.Outcome` per query (checks.py registers them), compared
     by query_parity.py: lookups by key run as SQL on SQLite, while date ranges, word search and ordering
     are evaluated on the converted values (SQLite would compare the app's mixed date formats as text,
     which is why the move is made), and each PostgreSQL query's plan must use its intended index.
Fails: psycopg errors propagate; nothing is written.
"""

from __future__ import annotations

from .outcome import Outcome, Subject
from .query_parity import compare, pg_rows, source_rows


def _lookups(s: Subject, name: str, query: str, picks: str, column: str, index: str, answer) -> Outcome:
    """The app's lookup of ``s.table``'s rows by ``column``: for the values ``picks`` selects (up to 5), the
    rows each finds on both sides, as ``answer(rows)``."""
    spec = s.catalog.table(s.table)
    values = [r[0] for r in s.conn.execute(picks)]
    expected = [answer(source_rows(s.conn, s.snapshot, spec, f"WHERE {column} = ?", (v,))) for v in values]
    actual = [answer(pg_rows(s.conn, query, (v,), spec)) for v in values]
    return compare(name, s.conn, query, (values[0] if values else "",), index, expected, actual)


def user_lookup(s: Subject) -> Outcome:
    return _lookups(
        s,
        "app_user_lookup",
        "SELECT * FROM users WHERE username = %s",
        "SELECT username FROM users ORDER BY md5(id) LIMIT 5",
        "username",
        "users_username_key",
        lambda rows: sorted(rows, key=lambda r: r["id"]),
    )


def referral_stats(s: Subject) -> Outcome:
    return _lookups(
        s,
        "app_referral_stats",
        "SELECT id FROM referral_tracking WHERE referrer_user_id = %s ORDER BY id",  # the app counts these
        "SELECT DISTINCT referrer_user_id FROM referral_tracking ORDER BY 1 LIMIT 5",
        "referrer_user_id",
        "idx_referral_tracking_referrer",
        lambda rows: sorted(r["id"] for r in rows),
    )


def funnel_progress(s: Subject) -> Outcome:
    return _lookups(
        s,
        "app_funnel_progress",
        "SELECT * FROM funnel_progress WHERE user_id = %s",
        "SELECT user_id FROM funnel_progress ORDER BY md5(user_id) LIMIT 5",
        "user_id",
        "funnel_progress_pkey",
        list,
    )


def _a_tweeting_user(conn) -> str | None:
    """The author of the first tweet by key (through the primary key index: cheap at any size)."""
    row = conn.execute("SELECT user_id FROM tweets ORDER BY id LIMIT 1").fetchone()
    return row[0] if row else None


def tweets_by_date_range(s: Subject) -> Outcome:
    user = _a_tweeting_user(s.conn)
    if user is None:
        return Outcome("app_tweets_by_date_range", True, {"skipped": "no tweets"})
    query = "SELECT id, created_at FROM tweets WHERE user_id = %s AND created_at BETWEEN %s AND %s ORDER BY created_at, id"
    bounds = s.conn.execute(
        "SELECT percentile_disc(0.25) WITHIN GROUP (ORDER BY created_at),"
        " percentile_disc(0.75) WITHIN GROUP (ORDER BY created_at) FROM tweets WHERE user_id = %s",
        (user,),
    ).fetchone()
    params = (user, *bounds)
    tweets = s.catalog.table("tweets")
    rows = source_rows(s.conn, s.snapshot, tweets, "WHERE user_id = ?", (user,))
    expected = sorted((r["created_at"], r["id"]) for r in rows if bounds[0] <= r["created_at"] <= bounds[1])
    actual = [(r["created_at"], r["id"]) for r in pg_rows(s.conn, query, params, tweets)]
    # (user, date) serves it; for a user with few tweets the planner may rightly prefer the date index
    indexes = ("idx_tweets_user_created", "idx_tweets_created")
    return compare("app_tweets_by_date_range", s.conn, query, params, indexes, expected, actual)


def reply_filter(s: Subject) -> Outcome:
    user = _a_tweeting_user(s.conn)
    if user is None:
        return Outcome("app_reply_filter", True, {"skipped": "no tweets"})
    query = "SELECT id FROM tweets WHERE user_id = %s AND is_reply = false ORDER BY id"
    tweets = s.catalog.table("tweets")
    expected = sorted(
        r["id"]
        for r in source_rows(s.conn, s.snapshot, tweets, "WHERE user_id = ?", (user,))
        if r["is_reply"] is False
    )
    actual = [r["id"] for r in pg_rows(s.conn, query, (user,), tweets)]
    return compare("app_reply_filter", s.conn, query, (user,), "idx_tweets_user_created", expected, actual)


def _probe_word(conn) -> str | None:
    """A word of the tweets that PostgreSQL's english configuration keeps as it is (no stemming, not a
    stop word), so that word search means the same on both sides."""
    row = conn.execute(
        "SELECT w FROM (SELECT DISTINCT (regexp_matches(lower(text), '[a-z]{5,}', 'g'))[1] AS w"
        " FROM (SELECT text FROM tweets ORDER BY id LIMIT 50) t) words"
        " WHERE to_tsvector('english', w)::text = quote_literal(w) || ':1' ORDER BY w LIMIT 1"
    ).fetchone()
    return row[0] if row else None


FTS_SLICE = 20_000  # tweets compared, the first by key; the index answers for the whole table


def full_text_search(s: Subject) -> Outcome:
    """The GIN-indexed search over the migrated tweets against the same search applied to the source
    texts: SQLite's LIKE finds the candidates (every word that stems to the probe word contains it, and
    LIKE is case-insensitive for ASCII, as the probe word is), PostgreSQL's text search decides on each
    source text without any index. Equal answers mean the text and the index carried the search over.
    Compared on the first FTS_SLICE tweets by key (byte order on both sides), so the cost is bounded."""
    conn, tweets = s.conn, s.catalog.table("tweets")
    word = _probe_word(conn)
    query = "SELECT id FROM tweets WHERE to_tsvector('english', text) @@ plainto_tsquery('english', %s) ORDER BY id"
    if word is None:
        return Outcome("app_full_text_search", True, {"skipped": "no tweets to search"})
    bound = s.snapshot.query("SELECT id FROM tweets ORDER BY id LIMIT 1 OFFSET ?", (FTS_SLICE - 1,))
    last = str(bound[0][0]) if bound else None
    where, params = (
        ("WHERE text LIKE ?", (f"%{word}%",))
        if last is None
        else ("WHERE text LIKE ? AND id <= ?", (f"%{word}%", last))
    )
    candidates = list(source_rows(conn, s.snapshot, tweets, where, params, ("text",)))
    matching = conn.execute(
        "SELECT n FROM unnest(%s::text[]) WITH ORDINALITY AS t(txt, n)"
        " WHERE to_tsvector('english', txt) @@ plainto_tsquery('english', %s)",
        ([r["text"] for r in candidates], word),
    ).fetchall()
    expected = sorted(candidates[n - 1]["id"] for (n,) in matching)
    sliced = query.replace(" ORDER BY id", "") + (' AND id COLLATE "C" <= %s' if last else "")
    found = pg_rows(conn, sliced, (word, last) if last else (word,), tweets)
    actual = sorted(r["id"] for r in found)
    extra = {"word": word, "source_candidates": len(candidates), "compared_up_to_key": last}
    return compare("app_full_text_search", conn, query, (word,), "idx_tweets_text", expected, actual, extra)


def pending_jobs(s: Subject) -> Outcome:
    conn, jobs = s.conn, s.catalog.table("analysis_queue")
    # the app's query takes the first 20; all pending jobs are compared, so that a job the app changed
    # since the load (left out on both sides) cannot shift which ones make the first 20
    query = "SELECT job_id FROM analysis_queue WHERE status = 'pending' ORDER BY priority DESC, created_at ASC, job_id"
    rows = [r for r in source_rows(conn, s.snapshot, jobs) if r.get("status") == "pending"]
    # NULLs sort first under DESC and last under ASC in PostgreSQL
    rows.sort(
        key=lambda r: (
            r["priority"] is not None,
            -(r["priority"] or 0),
            r["created_at"] is None,
            r["created_at"] or 0,
            r["job_id"],
        )
    )
    expected = [r["job_id"] for r in rows]
    actual = [r["job_id"] for r in pg_rows(conn, query, (), jobs)]
    indexes = ("idx_analysis_queue_priority", "idx_analysis_queue_status")  # the planner picks by selectivity
    return compare("app_pending_jobs", conn, query, (), indexes, expected, actual)
