"""Fuzzing the whole path: generated SQLite rows, every storage class in every column, through a real load.

The only outcomes allowed for a row are "loaded exactly" or "quarantined with a reason"; no value may
fail its table, the known-good rows beside the generated ones always load, and conservation holds.
"""

from __future__ import annotations

import sqlite3

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migration_pipeline.sample_data import APP_DDL

from .helpers import migrate
from .test_load import assert_every_row_loaded_exactly_or_quarantined

# A value as the app (or a bug in it) could leave it in any column: (SQL expression, parameter).
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12,
)


def _json_text(value) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


_odd_text = st.sampled_from(
    [
        "",
        "0",
        "1",
        "true",
        "FALSE",
        "null",
        "NaN",
        "{'single': 'quotes'}",
        '{"a": NaN}',
        '{"a": 1, "a": 2}',
        '"\\u0000"',
        '"\\ud800"',
        "[" * 513 + "]" * 513,
        "[" * 2_000 + "]" * 2_000,
        '{"big": 123456789012345678901234567890}',
        "x" * 70_000,
        "2024-03-05 17:21:09",
        "2024-03-05T17:21:09.123Z",
        "Tue Mar 05 17:21:09 +0000 2024",
        "2024-02-30 10:00:00",
        "u0",
        "with\x00nul",
        "ünïcödé 🎉",
    ]
)
VALUES = st.one_of(
    st.just(("?", None)),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(lambda v: ("?", v)),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda v: ("?", v)),
    st.text(max_size=20).filter(lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t)).map(lambda v: ("?", v)),
    _odd_text.map(lambda v: ("?", v)),
    _json_values.map(lambda v: ("?", _json_text(v))),
    st.binary(max_size=12).map(lambda v: ("?", v)),
    st.binary(min_size=1, max_size=8).map(lambda v: ("CAST(? AS TEXT)", v)),  # invalid UTF-8 text
)  # fmt: skip

TABLES = {
    "users": ["id", "username", "profile_data", "profile_picture_url", "created_at"],
    "tweets": ["id", "user_id", "text", "created_at", "is_reply", "metadata"],
    "funnel_progress": ["user_id", "current_command_index", "completed_commands", "last_updated"],
    "referral_tracking": ["id", "referral_code", "referrer_user_id", "referred_user_id", "used_at"],
}
GOOD = [
    "INSERT INTO users (id, username, profile_data) VALUES ('good:u', 'good_user', '{\"bio\": \"ok\"}')",
    "INSERT INTO tweets (id, user_id, text, created_at, is_reply, metadata)"
    " VALUES ('good:t', 'good:u', 'hello', '2024-03-05 17:21:09', 0, '{\"likes\": 1}')",
]


# an INTEGER PRIMARY KEY is the rowid: SQLite itself stores nothing but integers there
ROWID_KEY = st.one_of(
    st.just(("?", None)), st.integers(min_value=-(2**63), max_value=2**63 - 1).map(lambda v: ("?", v))
)


def _rows(table: str):
    columns = TABLES[table]
    key = ROWID_KEY if table == "referral_tracking" else VALUES
    return st.lists(st.tuples(key, *[VALUES for _ in columns[1:]]), max_size=6)


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(users=_rows("users"), tweets=_rows("tweets"), funnel=_rows("funnel_progress"),
       referrals=_rows("referral_tracking"))  # fmt: skip
def test_generated_rows_load_exactly_or_are_quarantined(
    conn, catalog, tmp_path, users, tweets, funnel, referrals
):
    import uuid

    work = tmp_path / uuid.uuid4().hex[:8]
    work.mkdir()
    source = work / "app.db"
    db = sqlite3.connect(source)
    db.executescript(APP_DDL)
    with db:
        for statement in GOOD:
            db.execute(statement)
        for table, rows in (("users", users), ("tweets", tweets), ("funnel_progress", funnel),
                            ("referral_tracking", referrals)):  # fmt: skip
            columns = TABLES[table]
            for row in rows:
                placeholders = ", ".join(expr for expr, _ in row)
                try:
                    db.execute(
                        f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) VALUES ({placeholders})",
                        [value for _, value in row],
                    )
                except sqlite3.DatabaseError:  # SQLite itself refuses it (e.g. no rowid left): no app row
                    continue
    db.close()
    run_id = f"fuzz-{work.name}"
    results = migrate(conn, catalog, source, run_id, work)  # never raises for a bad value
    assert_every_row_loaded_exactly_or_quarantined(
        conn, catalog, work / f"{run_id}.snapshot.db", results, run_id
    )
    unexplained = conn.execute(
        "SELECT count(*) FROM migration_audit.rejected_rows WHERE run_id = %s AND (reason = '' OR raw_row IS NULL)",
        (run_id,),
    ).fetchone()[0]
    assert unexplained == 0
    generated_keys = {row[0][1] for row in users} | {row[0][1] for row in tweets}
    if "good:t" not in generated_keys and "good:u" not in generated_keys:
        assert conn.execute("SELECT count(*) FROM tweets WHERE id = 'good:t'").fetchone()[0] == 1
