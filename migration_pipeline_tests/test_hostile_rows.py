"""Single rows that used to fail a whole table, end to end (real SQLite files, the embedded PostgreSQL):
each is quarantined with a clear reason and its original values while the rest of its table loads, the
checks pass, and the rollback export and a delta sync handle it."""

from __future__ import annotations

import base64
import json
import random
import sqlite3

import pytest

from migration_pipeline.move import audit, index_limits
from migration_pipeline.move.convert import InvalidText, Rejected, convert_json
from migration_pipeline.prove import behaviour, proof
from migration_pipeline.samples.sample_data import generate
from migration_pipeline.switch import delta
from migration_pipeline.switch.rollback import export_sqlite

from .helpers import editable_copy, migrate, sqlite_exec
from .test_delta import _outcome, other_conn  # noqa: F401 (other_conn is a fixture)

DEEP = "[" * 2_000 + "]" * 2_000
NUL_KEY = b"t\x00nul"
BLOCKING = {"rows_conserved", "referential_integrity", "content_parity", "jsonb_fidelity"}


def add_tweets(path, *rows) -> None:
    """Insert (id, text, created_at, metadata) tweets of the sample's first user, values bound as given."""
    db = sqlite3.connect(path)
    with db:
        for row in rows:
            db.execute(
                "INSERT INTO tweets (id, user_id, text, created_at, metadata) VALUES (?, 'u0', ?, ?, ?)", row
            )
    db.close()


def rowid_of(path, key) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT rowid FROM tweets WHERE id = ?", (key,)).fetchone()[0]


def quarantined(conn, run_id: str, table: str = "tweets") -> dict:
    rows = conn.execute(
        "SELECT source_key, column_name, reason, raw_row FROM migration_audit.rejected_rows"
        " WHERE run_id = %s AND table_name = %s",
        (run_id, table),
    ).fetchall()
    return {key: (column, reason, raw) for key, column, reason, raw in rows}


def passes_the_checks(conn, catalog, snapshot, table: str = "tweets") -> None:
    for outcome in proof.run(conn, catalog, table, snapshot, BLOCKING):
        assert outcome.passed, (outcome.name, outcome.problems)


@pytest.fixture
def hostile(tmp_path):
    """A small app database plus the issue's two rows: JSON nested 2,000 deep, a BLOB key holding NUL."""
    source = generate(tmp_path / "app.db", users=20, tweets=200, bad_fraction=0)
    add_tweets(source, ("deep", "deep json", "2024-03-05 17:21:09", DEEP))
    add_tweets(source, (NUL_KEY, "blob key", "2024-03-05 17:21:09", '{"ok": true}'))
    return source


def test_deep_json_and_a_nul_blob_key_are_quarantined_and_the_rest_loads(conn, catalog, hostile, tmp_path):
    """Each of the two rows made the whole tweets load fail (a RecursionError out of the JSON converter;
    the key's NUL in the audit COPY): now the table loads exactly what it loads without them."""
    plain = editable_copy(hostile, tmp_path / "plain.db")
    sqlite_exec(plain, "DELETE FROM tweets WHERE id = 'deep' OR typeof(id) = 'blob'")
    without = migrate(conn, catalog, plain, "run-0", tmp_path)["tweets"]
    tweets = migrate(conn, catalog, hostile, "run-1", tmp_path)["tweets"]
    assert tweets.source_rows == without.source_rows + 2 == tweets.loaded_rows + tweets.rejected_rows
    assert (tweets.loaded_rows, tweets.rejected_rows) == (without.loaded_rows, without.rejected_rows + 2)
    rejected = quarantined(conn, "run-1")
    column, reason, raw = rejected["deep"]
    assert column == "metadata" and reason.startswith("JSON nested deeper than 512 levels (2000 levels deep)")
    assert raw["metadata"] == DEEP  # the original text, kept whole
    column, reason, raw = rejected[f"rowid:{rowid_of(hostile, NUL_KEY)}"]  # no usable key: its rowid
    assert column == "id" and "BLOB" in reason
    assert raw["id"] == {"$base64": base64.b64encode(NUL_KEY).decode(), "$storage": "blob"}
    assert (
        conn.execute("SELECT count(*) FROM tweets WHERE text IN ('deep json', 'blob key')").fetchone()[0] == 0
    )
    passes_the_checks(conn, catalog, tmp_path / "run-1.snapshot.db")


def test_the_rollback_export_restores_both_originals(conn, catalog, hostile, tmp_path):
    """... and a text key that reads like a rowid (its int() failed the export's ordering)."""
    add_tweets(hostile, ("rowid:x", "looks like a rowid", "someday", None))
    migrate(conn, catalog, hostile, "run-1", tmp_path)
    out = tmp_path / "rollback.db"
    export_sqlite(conn, catalog, out, template=tmp_path / "run-1.snapshot.db")
    with sqlite3.connect(out) as db:
        assert db.execute("SELECT metadata FROM tweets WHERE id = 'deep'").fetchone() == (DEEP,)
        blob = db.execute("SELECT text, typeof(id) FROM tweets WHERE id = ?", (NUL_KEY,)).fetchall()
        assert blob == [("blob key", "blob")]
        assert db.execute("SELECT created_at FROM tweets WHERE id = 'rowid:x'").fetchone() == ("someday",)


def test_a_delta_sync_over_such_keys_equals_a_full_load(conn, other_conn, catalog, hostile, tmp_path):  # noqa: F811
    source = editable_copy(hostile, tmp_path / "live.db")
    migrate(conn, catalog, source, "full-1", tmp_path)
    db = sqlite3.connect(source)
    with db:
        db.execute("UPDATE tweets SET text = 'blob key, edited' WHERE id = ?", (NUL_KEY,))
        db.execute("DELETE FROM tweets WHERE id = 'deep'")
        db.execute(
            "INSERT INTO tweets (id, user_id, text, created_at) VALUES (CAST(? AS TEXT), 'u0', 'x', 0)",
            (b"k\xff\x00",),
        )
        db.execute("INSERT INTO tweets (id, user_id, text, created_at) VALUES (?, 'u0', 'y', 0)", ("k\x00",))
    db.close()
    delta.sync(conn, catalog, source, tmp_path / "full-1.snapshot.db", "delta-1")
    migrate(other_conn, catalog, source, "full-2", tmp_path)
    assert _outcome(conn, catalog) == _outcome(other_conn, catalog)
    keys = set(quarantined(conn, "delta-1"))
    with sqlite3.connect(source) as db:
        bad = db.execute(
            "SELECT rowid FROM tweets WHERE typeof(id) = 'blob' OR instr(id, char(0))"
        ).fetchall()
    assert len(bad) == 3 and {f"rowid:{r}" for (r,) in bad} <= keys  # no usable key: the rowid
    assert "deep" not in keys
    baseline = tmp_path / "full-1.snapshot.db"
    passes_the_checks(conn, catalog, baseline)
    headline = proof.run(conn, catalog, "tweets", baseline, {"quarantine"})[0].metadata["quarantined_rows"]
    written = conn.execute(
        "SELECT count(*) FROM migration_audit.rejected_rows WHERE run_id = 'delta-1' AND table_name = 'tweets'"
    ).fetchone()[0]
    assert headline == audit.latest_load(conn, "tweets")["rejected_rows"] == written  # carried and new


def test_a_text_too_big_for_the_full_text_index_is_quarantined(conn, catalog, tmp_path):
    """to_tsvector refuses more than 1MB of words, and the failed index entry failed the whole load."""
    source = generate(tmp_path / "app.db", users=5, tweets=50, bad_fraction=0)
    words = " ".join(f"w{i}" for i in range(250_000))
    add_tweets(source, ("huge", words, "2024-03-05 17:21:09", None), ("big", "y " * 400_000, 0, None))
    results = migrate(conn, catalog, source, "run-1", tmp_path)
    column, reason, raw = quarantined(conn, "run-1")["huge"]
    assert (
        column == "text" and "cannot be indexed by idx_tweets_text: string is too long for tsvector" in reason
    )
    assert raw["text"] == words
    assert results["tweets"].rejected_by_reason["text: too large for index idx_tweets_text"] == 1
    assert conn.execute("SELECT length(text) FROM tweets WHERE id = 'big'").fetchone() == (800_000,)
    passes_the_checks(conn, catalog, tmp_path / "run-1.snapshot.db")


def _index_limit_scans(conn, catalog, source, run_id, tmp_path) -> int:
    """How many times ``migrate`` asked the server whether a staged text is near the index limits (the
    statements sent, as libpq traced them)."""
    trace = tmp_path / f"{run_id}.trace"
    with open(trace, "wb") as sink:
        conn.pgconn.trace(sink.fileno())
        try:
            migrate(conn, catalog, source, run_id, tmp_path)
        finally:
            conn.pgconn.untrace()
    return trace.read_bytes().count(b"SELECT EXISTS (SELECT _rowid FROM")


def test_the_scan_for_index_limits_is_spared_while_every_copy_line_is_shorter(conn, catalog, tmp_path):
    """The load knows the longest COPY line it sent; only past SUSPECT_BYTES does it ask the server."""
    source = generate(tmp_path / "app.db", users=5, tweets=50, bad_fraction=0)
    assert _index_limit_scans(conn, catalog, source, "run-1", tmp_path) == 0
    near = "y " * (index_limits.SUSPECT_BYTES // 2)  # its line is longer than SUSPECT_BYTES; a small tsvector
    add_tweets(source, ("near", near, 0, None))
    assert _index_limit_scans(conn, catalog, source, "run-2", tmp_path) == 1
    assert conn.execute("SELECT length(text) FROM tweets WHERE id = 'near'").fetchone() == (len(near),)
    # texts only: the text of a jsonb can be longer than the line that gave it (1e9 -> 1000000000)
    tweets = catalog.table("tweets")
    assert index_limits._all_short(conn, tweets, ["text"], 100)
    assert not index_limits._all_short(conn, tweets, ["metadata"], 100)
    assert not index_limits._all_short(conn, tweets, ["text"], None)


# documents, not bare numbers: SQLite's JSON (numeric) affinity would store "0e-16384" as the REAL 0.0
PG_REFUSES = ["[0e-16384]", "[1e-16384]", '{"a": [1.5e-16383]}', "[0e1073741824]"]


def test_numbers_orjson_reads_but_numeric_refuses_are_quarantined_by_postgresql(conn, catalog, tmp_path):
    """The converter does not scan every document for these; the COPY is redone without each refused row."""
    source = generate(tmp_path / "app.db", users=5, tweets=50, bad_fraction=0)
    add_tweets(source, *((f"n{i}", "x", 0, text) for i, text in enumerate(PG_REFUSES)))
    add_tweets(source, ("fine", "x", 0, "[1e400, 1e-16383]"))
    results = migrate(conn, catalog, source, "run-1", tmp_path)
    rejected = quarantined(conn, "run-1")
    for i, text in enumerate(PG_REFUSES):
        column, reason, raw = rejected[f"n{i}"]
        assert (
            column == "metadata" and reason == "PostgreSQL refused the value: value overflows numeric format"
        )
        assert raw["metadata"] == text
    assert results["tweets"].rejected_by_reason["metadata: refused by PostgreSQL"] == len(PG_REFUSES)
    assert (
        conn.execute("SELECT metadata::text FROM tweets WHERE id = 'fine'").fetchone()[0].startswith("[1000")
    )
    passes_the_checks(conn, catalog, tmp_path / "run-1.snapshot.db")


@pytest.mark.parametrize(
    "text",
    ["1e400", "1e131071", "-9.9e131071", "1e-16383", "1" * 5_000, "[1e23]", "[" * 512 + "]" * 512,
     "1e131072", "[1, 10e131071]", "1" * 131_073, "[1e400, 1e-16384]", "[1e400, 0e1073741824]"],
)  # fmt: skip
def test_the_json_rules_are_postgresqls(conn, text):
    """What convert_json accepts, jsonb stores; what it refuses for its numbers, jsonb refuses too."""
    try:
        convert_json(text)
    except Rejected as err:
        assert err.kind == "JSON number out of range"
        with pytest.raises(Exception, match="value overflows numeric format"), conn.transaction():
            conn.execute("SELECT %s::jsonb", (text,))
    else:
        assert conn.execute("SELECT %s::jsonb::text IS NOT NULL", (text,)).fetchone()[0]


def test_sequences_with_ids_below_one_or_beyond_integer(conn, catalog, tmp_path):
    """setval refused 0, negative ids and quarantined ids past the integer range, failing the table."""
    source = generate(tmp_path / "app.db", users=5, tweets=10, bad_fraction=0)
    sqlite_exec(
        source,
        "DELETE FROM referral_usage_log",
        "INSERT INTO referral_codes (code, owner_user_id) VALUES ('C', 'u0')",
        "INSERT INTO referral_usage_log (id, referral_code, used_by_user_id) VALUES (0, 'C', 'u0'), (-7, 'C', 'u0')",
        "INSERT INTO referral_tracking (id, referral_code, referrer_user_id, referred_user_id)"
        " VALUES (2147483648, 'C', 'u0', 'u4')",
    )
    results = migrate(conn, catalog, source, "run-1", tmp_path)
    assert results["referral_usage_log"].loaded_rows == 2
    assert results["referral_tracking"].rejected_by_reason.get("id: invalid integer") == 1
    usage = conn.execute("SELECT nextval(pg_get_serial_sequence('referral_usage_log', 'id'))").fetchone()[0]
    top = conn.execute(
        "SELECT greatest((SELECT max(id) FROM referral_tracking), max((raw_row->>'id')::bigint)) FROM"
        " migration_audit.rejected_rows WHERE table_name = 'referral_tracking' AND raw_row->>'id' <> '2147483648'"
    ).fetchone()[0]
    tracking = conn.execute("SELECT nextval(pg_get_serial_sequence('referral_tracking', 'id'))").fetchone()[0]
    assert usage == 1 and tracking == (top or 0) + 1  # past every id, but for the one no row can hold


@pytest.mark.parametrize(
    "value",
    [1e16, -1e300, 1.5e-7, -0.0, float("inf"), float("-inf"), 2**63 - 1, -(2**63), 0.1, "a\x00b", b"\x00\xff",
     InvalidText(b"\xed\xa0\x80"), "", None],
)  # fmt: skip
def test_raw_row_keeps_value_and_storage_class_through_jsonb(conn, value):
    """jsonb writes the REAL 1e16 as the integer 10000000000000000 (and -0.0 as 0.0): read back as the
    rollback export reads raw_row, it was restored as an INTEGER."""
    stored = conn.execute("SELECT %s::jsonb::text", (audit.raw_row_json(["v"], [value]),)).fetchone()[0]
    back = audit.original_value(json.loads(stored, parse_int=audit.int64_or_real)["v"])
    assert type(back) is type(value) and back == value
    if isinstance(value, float):
        assert str(back) == str(value)  # -0.0 keeps its sign


def test_keys_that_cannot_load_are_their_rowid(conn, catalog, tmp_path):
    """A 10,000-character random key failed the audit write ("index row requires 10024 bytes" in
    rejected_rows' key index), a NUL its COPY: a key no key column can hold is recorded as its rowid."""
    source = generate(tmp_path / "app.db", users=5, tweets=10, bad_fraction=0)
    rng = random.Random(7)
    long_key = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(10_000))
    odd = [long_key, b"\x00" * 300, "k\x00"]
    add_tweets(source, *((key, "x", 0, None) for key in odd))
    add_tweets(source, (7, "seven", 0, None))  # TEXT affinity: the key '7'
    migrate(conn, catalog, source, "run-1", tmp_path)
    rejected = quarantined(conn, "run-1")
    for key in odd:
        column, _, raw = rejected[f"rowid:{rowid_of(source, key)}"]
        assert column == "id" and audit.original_value(raw["id"]) == key  # the original, exactly
    assert conn.execute("SELECT text FROM tweets WHERE id = '7'").fetchone() == ("seven",)


def test_a_quarantined_duplicate_with_invalid_json_leaves_the_json_checks_working(conn, catalog, tmp_path):
    """A source without the key's uniqueness: the JSON check joined the quarantined copy's invalid text to
    the loaded row by key and failed casting it ("invalid input syntax for type json")."""
    source = generate(tmp_path / "app.db", users=5, tweets=10, bad_fraction=0)
    sqlite_exec(
        source,
        "CREATE TABLE loose AS SELECT * FROM tweets",
        "DROP TABLE tweets",
        "ALTER TABLE loose RENAME TO tweets",
        "INSERT INTO tweets (id, user_id, text, created_at, metadata) VALUES ('dup', 'u0', 'x', 0, '[1]'),"
        " ('dup', 'u0', 'y', 0, '{bad'), ('dup', 'u0', 'z', 0, '[2]')",
    )
    migrate(conn, catalog, source, "run-1", tmp_path)
    assert conn.execute("SELECT text, metadata FROM tweets WHERE id = 'dup'").fetchone() == ("x", [1])
    assert quarantined(conn, "run-1")["dup"][0] in ("metadata", "id")
    passes_the_checks(conn, catalog, tmp_path / "run-1.snapshot.db")


def test_app_queries_compare_json_numbers_exactly(conn, catalog, tmp_path):
    """jsonb writes 1e23 as 100000000000000000000000, which Python's float 1e23 is not: the app-query
    checks reported a difference for a value loaded exactly."""
    source = generate(tmp_path / "app.db", users=5, tweets=10, bad_fraction=0)
    sqlite_exec(
        source,
        """UPDATE users SET profile_data = '{"n": 1e23, "m": [1e400, 0.1, -0]}'""",
        """UPDATE funnel_progress SET command_responses = '{"n": 1e23}'""",
    )
    migrate(conn, catalog, source, "run-1", tmp_path)
    names = {"app_user_lookup", "app_funnel_progress"}
    for _, outcome in behaviour.run(conn, catalog, tmp_path / "run-1.snapshot.db", names):
        assert outcome.passed, (outcome.name, outcome.problems)
