"""Behaviour parity (the seed's phase 4): the app's own queries answer the same on both sides.

In:  a connection to the target, the catalog and the snapshot the tables were loaded from.
Out: :func:`run` -> one :class:`~migration_pipeline.prove.proof.Outcome` per app query and per constraint
     probe (probes.py). The source side of a query is the snapshot's rows under the value rules, minus
     the rows the load quarantined and the rows the app changed since (the change log): lookups by key
     run as SQL on SQLite, while date ranges, word search and ordering are evaluated on the converted
     values (SQLite would compare the app's mixed date formats as text, which is why the move is made).
     Each PostgreSQL query's plan must use its intended index, checked with sequential and plain index
     scans discouraged so that the index matching the query's predicate shows at any table size.
     Constraint probes attempt violating writes in a rolled-back transaction and must be refused.
Fails: psycopg errors propagate; nothing is left written (every probe rolls back).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.types.json import set_json_loads

from ..catalog import Catalog, TableSpec
from ..move import audit, changes, keys, phase
from ..move.convert import Rejected, converter_for
from ..move.json_rules import parse_exact
from ..move.source import Snapshot, quote
from . import probes
from .proof import Outcome


@dataclass(frozen=True)
class AppCheck:
    name: str
    table: str  # the asset the check belongs to
    description: str
    run: Callable[[psycopg.Connection, Catalog, Snapshot], Outcome]
    blocking: bool = True


def comparable_row(spec: TableSpec, columns, values) -> dict | None:
    """A source row under the value rules as {column: value}, JSON parsed exactly (numbers as Decimal,
    json_rules.parse_exact) so it compares with what :func:`_pg_rows` returns for jsonb (1e23 and the
    digits jsonb writes for it are one number); None when a value would be rejected."""
    out = {}
    for name, value in zip(columns, values, strict=True):
        col = spec.column(name)
        try:
            v = converter_for(col.kind, col.max_length)(value)
        except Rejected:
            return None
        out[name] = parse_exact(v) if col.kind == "jsonb" and v is not None else v
    return out


def _skipped(conn, table: str) -> set[str]:
    """Keys to leave out on both sides: rows the load quarantined (absent by design) and rows the app
    changed since the load (the change log's explained entries: a live database answers differently,
    and rightly so; a change that is not the app's is compared, and so found)."""
    rows = conn.execute(
        sql.SQL("{} UNION {}").format(audit.quarantined_keys_sql(table), changes.changed_keys_sql(table))
    ).fetchall()
    return {r[0] for r in rows}


def _source(
    conn, snapshot: Snapshot, spec: TableSpec, where: str = "", params: tuple = (), only: tuple[str, ...] = ()
) -> Iterator[dict]:
    """The loaded source rows of ``spec`` matching a SQLite filter, converted (all columns, or the key and
    ``only``); rows the load quarantined or the app changed are left out by key (see _skipped)."""
    if not snapshot.has_table(spec.name):
        return
    present = [c for c in snapshot.columns(spec.name) if c in spec.column_names]
    columns = [c for c in present if not only or c in only or c in spec.primary_key]
    skip = _skipped(conn, spec.name)
    key = spec.primary_key[0]
    select = f"SELECT {', '.join(map(quote, columns))} FROM {quote(spec.name)} {where}"
    for values in snapshot.query(select, params):
        row = comparable_row(spec, columns, values)
        if row is not None and keys.key_text([row.get(key)]) not in skip:
            yield row


def _pg_rows(conn, query: str, params: tuple, spec: TableSpec) -> list[dict]:
    """The PostgreSQL answer, less the rows the app changed since the load (see _skipped)."""
    skip = _skipped(conn, spec.name)
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        set_json_loads(parse_exact, cur)
        rows = cur.execute(query, params).fetchall()
    return [r for r in rows if keys.key_text(r[c] for c in spec.primary_key) not in skip]


def _uses_index(conn, query: str, params: tuple, index: str | tuple[str, ...]) -> tuple[bool, list[str]]:
    """Whether the plan uses the intended index (or one of several that serve the query equally)."""
    wanted = {index} if isinstance(index, str) else set(index)
    with conn.transaction(force_rollback=True):
        # Neither whole-table scans nor ordered walks of another index: only an index whose conditions
        # match the query's own can serve it, so the plan names the index that serves the predicate,
        # whatever the table's size (GIN indexes are only ever used this way).
        conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute("SET LOCAL enable_indexscan = off")
        conn.execute("SET LOCAL enable_indexonlyscan = off")
        plan = conn.execute("EXPLAIN (FORMAT JSON) " + query, params).fetchone()[0]
    used = []

    def walk(node):
        if "Index Name" in node:
            used.append(node["Index Name"])
        for child in node.get("Plans", ()):
            walk(child)

    walk(plan[0]["Plan"])
    return bool(wanted & set(used)), used


def _compare(name, conn, query, params, index, expected, actual, extra=None) -> Outcome:
    uses, used = _uses_index(conn, query, params, index)
    problems = []
    if (why := _not_from_source(conn)) is not None:  # the query and its plan are what is proven
        extra = {**(extra or {}), "values_compared": f"no: {why}"}
    elif expected != actual:
        problems.append(f"PostgreSQL answered {_short(actual)}, the source {_short(expected)}")
    if not uses:
        problems.append(f"the plan does not use {' or '.join(sorted({index} if isinstance(index, str) else set(index)))}"
                        f" (it uses {used or 'no index'})")  # fmt: skip
    metadata = {"query": query, "params": [str(p) for p in params], "index": index, "indexes_used": used}
    metadata.update(extra or {})
    metadata["answer_size"] = len(actual) if hasattr(actual, "__len__") else actual
    return Outcome(name, not problems, metadata, tuple(problems))


def _not_from_source(conn) -> str | None:
    """Why the source snapshot no longer describes the data (finalized, or a table proven against a
    baseline recorded from PostgreSQL since its load), or None when answers must equal the source's."""
    now = phase.current(conn)
    if now.name == phase.FINALIZED:
        return now.describe()
    rebased = conn.execute(
        "SELECT string_agg(DISTINCT b.table_name, ', ') FROM migration_audit.proof_baselines b"
        " WHERE b.recorded_at > (SELECT max(l.finished_at) FROM migration_audit.table_loads l"
        "                        WHERE l.table_name = b.table_name)"
    ).fetchone()[0]
    return (
        f"proven against a baseline recorded from PostgreSQL since the load: {rebased}" if rebased else None
    )


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _user_lookup(conn, catalog, snapshot) -> Outcome:
    spec = catalog.table("users")
    query = "SELECT * FROM users WHERE username = %s"
    names = [r[0] for r in conn.execute("SELECT username FROM users ORDER BY md5(id) LIMIT 5")]
    by_id = lambda rows: sorted(rows, key=lambda r: r["id"])  # noqa: E731
    expected = [by_id(_source(conn, snapshot, spec, "WHERE username = ?", (n,))) for n in names]
    actual = [by_id(_pg_rows(conn, query, (n,), spec)) for n in names]
    return _compare(
        "app_user_lookup", conn, query, (names[0] if names else "",), "users_username_key", expected, actual
    )


def _a_tweeting_user(conn) -> str | None:
    """The author of the first tweet by key (through the primary key index: cheap at any size)."""
    row = conn.execute("SELECT user_id FROM tweets ORDER BY id LIMIT 1").fetchone()
    return row[0] if row else None


def _tweets_by_date_range(conn, catalog, snapshot) -> Outcome:
    user = _a_tweeting_user(conn)
    if user is None:
        return Outcome("app_tweets_by_date_range", True, {"skipped": "no tweets"})
    query = "SELECT id, created_at FROM tweets WHERE user_id = %s AND created_at BETWEEN %s AND %s ORDER BY created_at, id"
    bounds = conn.execute(
        "SELECT percentile_disc(0.25) WITHIN GROUP (ORDER BY created_at),"
        " percentile_disc(0.75) WITHIN GROUP (ORDER BY created_at) FROM tweets WHERE user_id = %s",
        (user,),
    ).fetchone()
    params = (user, *bounds)
    rows = _source(conn, snapshot, catalog.table("tweets"), "WHERE user_id = ?", (user,))
    expected = sorted((r["created_at"], r["id"]) for r in rows if bounds[0] <= r["created_at"] <= bounds[1])
    actual = [(r["created_at"], r["id"]) for r in _pg_rows(conn, query, params, catalog.table("tweets"))]
    # (user, date) serves it; for a user with few tweets the planner may rightly prefer the date index
    indexes = ("idx_tweets_user_created", "idx_tweets_created")
    return _compare("app_tweets_by_date_range", conn, query, params, indexes, expected, actual)


def _reply_filter(conn, catalog, snapshot) -> Outcome:
    user = _a_tweeting_user(conn)
    if user is None:
        return Outcome("app_reply_filter", True, {"skipped": "no tweets"})
    query = "SELECT id FROM tweets WHERE user_id = %s AND is_reply = false ORDER BY id"
    rows = _source(conn, snapshot, catalog.table("tweets"), "WHERE user_id = ?", (user,))
    expected = sorted(r["id"] for r in rows if r["is_reply"] is False)
    actual = [r["id"] for r in _pg_rows(conn, query, (user,), catalog.table("tweets"))]
    return _compare("app_reply_filter", conn, query, (user,), "idx_tweets_user_created", expected, actual)


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


def _full_text_search(conn, catalog, snapshot) -> Outcome:
    """The GIN-indexed search over the migrated tweets against the same search applied to the source
    texts: SQLite's LIKE finds the candidates (every word that stems to the probe word contains it, and
    LIKE is case-insensitive for ASCII, as the probe word is), PostgreSQL's text search decides on each
    source text without any index. Equal answers mean the text and the index carried the search over.
    Compared on the first FTS_SLICE tweets by key (byte order on both sides), so the cost is bounded."""
    word = _probe_word(conn)
    query = "SELECT id FROM tweets WHERE to_tsvector('english', text) @@ plainto_tsquery('english', %s) ORDER BY id"
    if word is None:
        return Outcome("app_full_text_search", True, {"skipped": "no tweets to search"})
    bound = snapshot.query("SELECT id FROM tweets ORDER BY id LIMIT 1 OFFSET ?", (FTS_SLICE - 1,))
    last = str(bound[0][0]) if bound else None
    where, params = (
        ("WHERE text LIKE ?", (f"%{word}%",))
        if last is None
        else ("WHERE text LIKE ? AND id <= ?", (f"%{word}%", last))
    )
    candidates = list(_source(conn, snapshot, catalog.table("tweets"), where, params, ("text",)))
    matching = conn.execute(
        "SELECT n FROM unnest(%s::text[]) WITH ORDINALITY AS t(txt, n)"
        " WHERE to_tsvector('english', txt) @@ plainto_tsquery('english', %s)",
        ([r["text"] for r in candidates], word),
    ).fetchall()
    expected = sorted(candidates[n - 1]["id"] for (n,) in matching)
    sliced = query.replace(" ORDER BY id", "") + (' AND id COLLATE "C" <= %s' if last else "")
    found = _pg_rows(conn, sliced, (word, last) if last else (word,), catalog.table("tweets"))
    actual = sorted(r["id"] for r in found)
    extra = {"word": word, "source_candidates": len(candidates), "compared_up_to_key": last}
    return _compare("app_full_text_search", conn, query, (word,), "idx_tweets_text", expected, actual, extra)


def _referral_stats(conn, catalog, snapshot) -> Outcome:
    query = "SELECT id FROM referral_tracking WHERE referrer_user_id = %s ORDER BY id"  # the app counts these
    referrers = [
        r[0]
        for r in conn.execute("SELECT DISTINCT referrer_user_id FROM referral_tracking ORDER BY 1 LIMIT 5")
    ]
    spec = catalog.table("referral_tracking")
    expected = [
        sorted(r["id"] for r in _source(conn, snapshot, spec, "WHERE referrer_user_id = ?", (u,)))
        for u in referrers
    ]
    actual = [[r["id"] for r in _pg_rows(conn, query, (u,), spec)] for u in referrers]
    return _compare(
        "app_referral_stats",
        conn,
        query,
        (referrers[0] if referrers else "",),
        "idx_referral_tracking_referrer",
        expected,
        actual,
    )


def _funnel_progress(conn, catalog, snapshot) -> Outcome:
    query = "SELECT * FROM funnel_progress WHERE user_id = %s"
    users = [r[0] for r in conn.execute("SELECT user_id FROM funnel_progress ORDER BY md5(user_id) LIMIT 5")]
    spec = catalog.table("funnel_progress")
    expected = [list(_source(conn, snapshot, spec, "WHERE user_id = ?", (u,))) for u in users]
    actual = [_pg_rows(conn, query, (u,), spec) for u in users]
    return _compare(
        "app_funnel_progress",
        conn,
        query,
        (users[0] if users else "",),
        "funnel_progress_pkey",
        expected,
        actual,
    )


def _pending_jobs(conn, catalog, snapshot) -> Outcome:
    # the app's query takes the first 20; all pending jobs are compared, so that a job the app changed
    # since the load (left out on both sides) cannot shift which ones make the first 20
    query = "SELECT job_id FROM analysis_queue WHERE status = 'pending' ORDER BY priority DESC, created_at ASC, job_id"
    rows = [
        r for r in _source(conn, snapshot, catalog.table("analysis_queue")) if r.get("status") == "pending"
    ]
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
    actual = [r["job_id"] for r in _pg_rows(conn, query, (), catalog.table("analysis_queue"))]
    indexes = ("idx_analysis_queue_priority", "idx_analysis_queue_status")  # the planner picks by selectivity
    return _compare("app_pending_jobs", conn, query, (), indexes, expected, actual)


CHECKS: tuple[AppCheck, ...] = (
    AppCheck("app_user_lookup", "users", "The app's user lookup by username answers the same on both sides, through the username index.", _user_lookup),
    AppCheck("app_tweets_by_date_range", "tweets", "A user's tweets in a date range: same tweets in the same order, through idx_tweets_user_created (or _created).", _tweets_by_date_range),
    AppCheck("app_reply_filter", "tweets", "A user's non-reply tweets: the same on both sides, through idx_tweets_user_created.", _reply_filter),
    AppCheck("app_full_text_search", "tweets", "Full-text search for a word returns the tweets containing it, through the GIN index idx_tweets_text.", _full_text_search),
    AppCheck("app_referral_stats", "referral_tracking", "Referral counts per referrer are the same on both sides, through idx_referral_tracking_referrer.", _referral_stats),
    AppCheck("app_funnel_progress", "funnel_progress", "A user's funnel progress reads the same on both sides, through the primary key.", _funnel_progress),
    AppCheck("app_pending_jobs", "analysis_queue", "Pending analysis jobs by priority: same jobs in the same order, through idx_analysis_queue_priority or _status.", _pending_jobs),
    AppCheck("refuses_duplicate_username", "users", "A second user with an existing username is refused (UNIQUE), in a rolled-back transaction.", probes.refuses_duplicate_username),
    AppCheck("refuses_orphan_tweet", "tweets", "A tweet of a user that does not exist is refused (FOREIGN KEY), in a rolled-back transaction.", probes.refuses_orphan_tweet),
    AppCheck("refuses_bad_job_status", "analysis_queue", "An analysis job with an unknown status is refused (CHECK valid_status), in a rolled-back transaction.", probes.refuses_bad_job_status),
)  # fmt: skip


def run(
    conn: psycopg.Connection, catalog: Catalog, snapshot_path: Path | None, names: set[str] | None = None
) -> list[tuple[AppCheck, Outcome]]:
    """Run the behaviour checks (all, or those in ``names``)."""
    selected = [c for c in CHECKS if names is None or c.name in names]
    if snapshot_path is None or not Path(snapshot_path).is_file():
        return [(c, Outcome(c.name, False, {}, ("no source snapshot to compare with",))) for c in selected]
    with Snapshot(snapshot_path) as snapshot:
        return [(c, c.run(conn, catalog, snapshot)) for c in selected]
