"""Rollback: PostgreSQL exported to a new SQLite file in the app's format, proved by round trips
(SQLite -> PostgreSQL A -> SQLite -> PostgreSQL B gives identical content and checksums)."""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from migration_pipeline.catalog import SQLITE_APP_DDL, SQLITE_QUEUE_DDL, load_catalog
from migration_pipeline.connect.target import apply_schema
from migration_pipeline.move import audit, checksums
from migration_pipeline.move.convert import convert_json, convert_timestamp
from migration_pipeline.move.source import file_sha256
from migration_pipeline.switch import rollback, sqlite_values
from migration_pipeline.switch.rollback import ExportError, export_sqlite
from migration_pipeline.switch.sqlite_values import compact_json, format_timestamp

from .helpers import fingerprint, migrate

ISO_MS_OR_US = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.(\d{3}|\d{6})Z")
PLAIN = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


@pytest.fixture(scope="module")
def new_database(server):
    """A factory of fresh databases on the embedded server (autocommit connections), dropped afterwards."""
    made = []

    def create() -> psycopg.Connection:
        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(**server, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append((name, psycopg.connect(**{**server, "dbname": name}, autocommit=True)))
        return made[-1][1]

    yield create
    with psycopg.connect(**server, autocommit=True) as admin:
        for name, conn in made:
            conn.close()
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def migrated(new_database, sample_db, tmp_path_factory):
    """Database A: the sample migrated once (tests here only read it), and the sample's sha256 before."""
    workdir = tmp_path_factory.mktemp("rollback")
    sample_sha = file_sha256(sample_db)
    conn = new_database()
    migrate(conn, load_catalog(), sample_db, "run-a", workdir)
    return SimpleNamespace(conn=conn, snapshot=workdir / "run-a.snapshot.db", sample_sha=sample_sha)


def rejected(conn, run_id: str) -> list[tuple]:
    """Every quarantined row's table, column and original values (not the rowid-bearing reason)."""
    return conn.execute(
        "SELECT table_name, column_name, raw_row::text FROM migration_audit.rejected_rows WHERE run_id = %s"
        " ORDER BY 1, 3, 2",
        (run_id,),
    ).fetchall()


def assert_same_content(a, b, catalog, *, quarantined: dict[str, int]) -> None:
    """B holds exactly A's rows; B's load checksum equals A's content checksum; B quarantined as told."""
    for spec in catalog.tables:
        load_b = audit.latest_load(b, spec.name)
        assert fingerprint(b, spec.name) == fingerprint(a, spec.name), spec.name
        columns = checksums.Checksum.parse(load_b["checksum"]).columns
        assert load_b["checksum"] == str(checksums.table_checksum(a, spec, columns)), spec.name
        assert load_b["rejected_rows"] == quarantined.get(spec.name, 0), spec.name


def test_round_trip_of_postgres_content_is_identical(migrated, new_database, catalog, tmp_path):
    a = migrated.conn
    out = tmp_path / "rollback.db"
    result = export_sqlite(a, catalog, out, template=migrated.snapshot, include_quarantined=False)
    b = new_database()
    migrate(b, catalog, out, "run-b", tmp_path)
    assert_same_content(a, b, catalog, quarantined={})
    for spec in catalog.tables:
        load_a, load_b = audit.latest_load(a, spec.name), audit.latest_load(b, spec.name)
        assert result.tables[spec.name].rows == load_a["loaded_rows"] == load_b["loaded_rows"]
        assert load_b["checksum"] == load_a["checksum"], spec.name  # the very checksum of the first load
        assert result.tables[spec.name].restored == 0 and not result.tables[spec.name].inexact


def test_round_trip_with_quarantined_rows_quarantines_the_same_rows(
    migrated, new_database, catalog, tmp_path
):
    a = migrated.conn
    out = tmp_path / "rollback.db"
    result = export_sqlite(a, catalog, out, template=migrated.snapshot)
    b = new_database()
    migrate(b, catalog, out, "run-b", tmp_path)
    counts = {t: audit.latest_load(a, t)["rejected_rows"] for t in catalog.names}
    assert sum(counts.values()) > 300  # every kind of broken value is in the sample
    assert_same_content(a, b, catalog, quarantined=counts)
    for spec in catalog.tables:
        load_a, load_b = audit.latest_load(a, spec.name), audit.latest_load(b, spec.name)
        assert (result.tables[spec.name].restored, result.tables[spec.name].skipped) == (counts[spec.name], 0)
        assert load_b["source_rows"] == load_a["source_rows"] and load_b["checksum"] == load_a["checksum"]
    assert rejected(b, "run-b") == rejected(a, "run-a")  # the same rows, with the same original values

    db = sqlite3.connect(out)
    db.text_factory = bytes  # read TEXT as stored, invalid UTF-8 included
    users = {r[0]: r[1:] for r in db.execute("SELECT id, typeof(username), username, typeof(profile_picture_url), profile_picture_url FROM users")}  # fmt: skip
    assert users[b"u5"][:2] == (b"text", b"\xff\xfeuser")  # TEXT that is not UTF-8, as the app stored it
    assert users[b"u4"][:2] == (b"text", b"user_4\x00nul")  # TEXT holding a NUL
    assert users[b"u2"][:2] == (b"null", None)
    assert users[b"u6"][2:] == (b"blob", b"\x89PNG")
    assert len(users[b"u3"][1]) == 300


def test_rows_the_app_wrote_after_the_switch_are_exported_exactly(new_database, catalog, sample_db, tmp_path):
    a = new_database()
    migrate(a, catalog, sample_db, "run-a", tmp_path)
    updated, deleted = (r[0] for r in a.execute("SELECT id FROM tweets ORDER BY id LIMIT 2").fetchall())
    code = a.execute("SELECT min(code) FROM referral_codes").fetchone()[0]
    quarantined_ids = {
        int(k)
        for (k,) in a.execute(
            "SELECT source_key FROM migration_audit.rejected_rows WHERE table_name = 'referral_usage_log'"
        )
    }
    with a.transaction():
        a.execute(
            "INSERT INTO users (id, username, profile_data, last_scraped) VALUES ('app1', 'app_user', %s,"
            " '2024-06-01 12:00:00.123456+02')",
            ('{"name": "Ünï \\"q\\"", "n": 1.0, "tiny": 1e-7, "big": 123456789012345678901234567890}',),
        )
        a.execute(
            "INSERT INTO tweets (id, user_id, text, created_at, url, is_reply, metadata) VALUES ('app-t1', 'app1',"
            " 'hello, world: ok', '2024-06-02 08:15:30.654321+00', NULL, true, %s)",
            ('{"likes": 3, "tags": ["a b", "c"]}',),
        )
        a.execute(
            "UPDATE tweets SET is_reply = true, metadata = '{\"edited\": true}' WHERE id = %s", (updated,)
        )
        a.execute("DELETE FROM tweets WHERE id = %s", (deleted,))
        new_id = a.execute(
            "INSERT INTO referral_usage_log (referral_code, used_by_user_id) VALUES (%s, 'app1') RETURNING id",
            (code,),
        ).fetchone()[0]
        # a quarantined row's id now taken in PostgreSQL (today's sequences even hand them out again)
        clash = min(quarantined_ids - {new_id})
        a.execute(
            "INSERT INTO referral_usage_log (id, referral_code, used_by_user_id) VALUES (%s, %s, 'app1')",
            (clash, code),
        )
    taken = sorted({new_id, clash} & quarantined_ids)

    out = tmp_path / "rollback.db"
    result = export_sqlite(a, catalog, out, template=tmp_path / "run-a.snapshot.db")
    db = sqlite3.connect(out)
    user = db.execute("SELECT profile_data, last_scraped, created_at FROM users WHERE id = 'app1'").fetchone()
    assert user[0] == '{"n":1.0,"big":123456789012345678901234567890,"name":"Ünï \\"q\\"","tiny":0.0000001}'
    assert user[1] == "2024-06-01T10:00:00.123456Z"  # the column's habit is toISOString, in UTC
    assert ISO_MS_OR_US.fullmatch(user[2])  # PostgreSQL's now(): sub-second digits kept, so ISO form
    tweet = db.execute(
        "SELECT created_at, is_reply, typeof(is_reply), metadata, url FROM tweets WHERE id = 'app-t1'"
    )
    assert tweet.fetchone() == (
        "2024-06-02T08:15:30.654321Z",
        1,
        "integer",
        '{"tags":["a b","c"],"likes":3}',
        None,
    )
    assert db.execute("SELECT is_reply, metadata FROM tweets WHERE id = ?", (updated,)).fetchone() == (1, '{"edited":true}')  # fmt: skip
    assert db.execute("SELECT count(*) FROM tweets WHERE id = ?", (deleted,)).fetchone() == (0,)
    usage = "SELECT referral_code, used_by_user_id FROM referral_usage_log WHERE id IN (?, ?)"
    assert db.execute(usage, (new_id, clash)).fetchall() == [(code, "app1")] * 2  # PostgreSQL's rows win
    skipped = result.tables["referral_usage_log"]
    assert skipped.skipped == len(taken)
    assert [k.split(":")[0] for k in skipped.skipped_keys] == [str(i) for i in taken]
    assert all("kept PostgreSQL's row" in k for k in skipped.skipped_keys)
    sequence = dict(db.execute("SELECT name, seq FROM sqlite_sequence"))
    assert sequence["referral_usage_log"] == max(quarantined_ids | {new_id})
    db.close()

    b = new_database()
    migrate(b, catalog, out, "run-b", tmp_path)
    counts = {t: audit.latest_load(a, t)["rejected_rows"] for t in catalog.names}
    counts["referral_usage_log"] -= len(taken)  # the skipped ones
    assert_same_content(a, b, catalog, quarantined=counts)


def test_the_export_is_in_the_apps_format_and_touches_no_existing_file(
    migrated, catalog, sample_db, tmp_path
):
    a, template = migrated.conn, migrated.snapshot
    template_sha = file_sha256(template)
    out = tmp_path / "rollback.db"
    export_sqlite(a, catalog, out, template=template)
    db = sqlite3.connect(out)
    schema = "SELECT type, name, sql FROM sqlite_master ORDER BY name"
    assert db.execute(schema).fetchall() == sqlite3.connect(f"file:{template}?mode=ro", uri=True).execute(schema).fetchall()  # fmt: skip
    types = {r[1]: r[2] for r in db.execute("PRAGMA table_info(tweets)")}
    assert (types["created_at"], types["metadata"], types["is_reply"]) == ("DATETIME", "JSON", "BOOLEAN")
    for table in ("referral_tracking", "referral_usage_log", "analysis_queue", "analysis_chunks"):
        top = db.execute(
            f"SELECT max(id) FROM {table}" if "referral" in table else f"SELECT max(rowid) FROM {table}"
        )
        assert (
            db.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
            == top.fetchone()
        )
    assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # Each timestamp column in the habit the app uses for it (the loaded rows; restored ones are as they were).
    loaded = {r[0] for r in a.execute("SELECT id FROM users")}
    forms = {(r[0] in loaded, bool(PLAIN.fullmatch(r[1])), bool(ISO_MS_OR_US.fullmatch(r[2]))) for r in db.execute("SELECT id, created_at, last_scraped FROM users")}  # fmt: skip
    assert {f for f in forms if f[0]} == {(True, True, True)}
    in_key_order = [r[0] for r in db.execute("SELECT id FROM users ORDER BY rowid")][: len(loaded)]
    assert set(in_key_order) == loaded and in_key_order == sorted(
        loaded, key=str.encode
    )  # then restored ones
    loaded = {r[0] for r in a.execute("SELECT id FROM tweets")}
    booleans = {
        r[1:] for r in db.execute("SELECT id, typeof(is_reply), is_reply FROM tweets") if r[0] in loaded
    }
    assert booleans <= {("integer", 0), ("integer", 1), ("null", None)}
    db.close()

    exported = file_sha256(out)
    with pytest.raises(ExportError, match="exists"):
        export_sqlite(a, catalog, out, template=template)
    (tmp_path / "other.db-journal").write_bytes(b"")  # a hot journal would be replayed into a new file
    with pytest.raises(ExportError, match="-journal exists"):
        export_sqlite(a, catalog, tmp_path / "other.db", template=template)
    assert not (tmp_path / "other.db").exists()
    assert file_sha256(out) == exported
    assert not list(tmp_path.glob(".*partial"))  # no half-written file is left behind
    assert file_sha256(sample_db) == migrated.sample_sha and file_sha256(template) == template_sha


def test_without_template_the_sample_data_ddl_and_its_habit(new_database, catalog, tmp_path):
    conn = new_database()
    apply_schema(conn, catalog)
    conn.execute(
        "INSERT INTO users (id, username, created_at) VALUES ('u1', 'one', '2024-03-05 19:21:09+02')"
    )
    conn.execute(
        "INSERT INTO tweets (id, user_id, text, created_at, metadata) VALUES"
        " ('t1', 'u1', 'a', '2024-03-05 17:21:09.5+00', '5'), ('t2', 'u1', 'b', 'infinity', '1.5'),"
        " ('t3', 'u1', 'c', '2024-03-05 17:21:09+00', '1.0'), ('t4', 'u1', 'd', '2024-03-05 17:21:09+00', '1e400')"
    )
    conn.execute("INSERT INTO referral_codes (code, owner_user_id) VALUES ('R', 'u1')")
    conn.execute(
        "INSERT INTO referral_usage_log (referral_code, used_by_user_id) VALUES ('R', 'u1'), ('R', 'u1')"
    )
    conn.execute("DELETE FROM referral_usage_log")  # ids 1 and 2 are gone, but the app must not reuse them
    result = export_sqlite(conn, catalog, tmp_path / "x.db")
    db = sqlite3.connect(tmp_path / "x.db")
    app = sqlite3.connect(":memory:")
    app.executescript(SQLITE_APP_DDL)
    schema = "SELECT name, sql FROM sqlite_master WHERE name != 'sqlite_sequence' ORDER BY name"
    assert db.execute(schema).fetchall() == app.execute(schema).fetchall()  # empty queue tables left out
    assert db.execute("SELECT created_at FROM users").fetchone() == ("2024-03-05 17:21:09",)  # UTC, app form
    assert db.execute("SELECT * FROM sqlite_sequence").fetchall() == [("referral_usage_log", 2)]
    rows = dict(db.execute("SELECT id, created_at FROM tweets"))
    assert rows == {"t1": "2024-03-05T17:21:09.500Z", "t2": "infinity", "t3": "2024-03-05 17:21:09", "t4": "2024-03-05 17:21:09"}  # fmt: skip
    # SQLite's JSON affinity stores a top-level '1.0' as 1 and 1e400 as inf: reported, not hidden
    assert result.tables["tweets"].inexact == {"created_at": 1, "metadata": 2}
    assert {t.ddl_from for t in result.tables.values()} == {"sample_data"}

    conn.execute("INSERT INTO analysis_queue (user_id, total_chunks) VALUES ('u1', 4)")
    export_sqlite(conn, catalog, tmp_path / "y.db", include_quarantined=False)
    queue = sqlite3.connect(":memory:")
    queue.executescript(SQLITE_QUEUE_DDL)
    tables = dict(sqlite3.connect(tmp_path / "y.db").execute("SELECT name, sql FROM sqlite_master"))
    assert tables["analysis_queue"] == queue.execute("SELECT sql FROM sqlite_master WHERE name = 'analysis_queue'").fetchone()[0]  # fmt: skip
    assert "analysis_chunks" not in tables


def test_one_consistent_point_in_time_while_the_app_writes(
    new_database, server, catalog, tmp_path, monkeypatch
):
    conn = new_database()
    apply_schema(conn, catalog)
    conn.execute("INSERT INTO users (id, username) VALUES ('u1', 'one')")
    app = psycopg.connect(**{**server, "dbname": conn.info.dbname}, autocommit=True)
    export_table, seen = rollback._export_table, []

    def the_app_writes_meanwhile(pg, db, spec, *args):
        seen.append(pg.execute("SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only')").fetchone())  # fmt: skip
        if spec.name == "users":  # after the transaction began, before any row was read
            app.execute(
                "INSERT INTO tweets (id, user_id, text, created_at) VALUES ('late', 'u1', 'x', now())"
            )
            app.execute("UPDATE users SET username = 'renamed'")
        return export_table(pg, db, spec, *args)

    monkeypatch.setattr(rollback, "_export_table", the_app_writes_meanwhile)
    result = export_sqlite(conn, catalog, tmp_path / "x.db")
    app.close()
    db = sqlite3.connect(tmp_path / "x.db")
    assert db.execute("SELECT id, username FROM users").fetchall() == [("u1", "one")]
    assert db.execute("SELECT count(*) FROM tweets").fetchone() == (0,) and result.tables["tweets"].rows == 0
    assert set(seen) == {("repeatable read", "on")}


def test_every_table_has_the_apps_ddl_in_sample_data(catalog):
    db = sqlite3.connect(":memory:")
    db.executescript(SQLITE_APP_DDL + SQLITE_QUEUE_DDL)
    for spec in catalog.tables:
        assert [r[1] for r in db.execute(f"PRAGMA table_info({spec.name})")] == list(spec.column_names)


def test_refuses_a_connection_inside_a_transaction(migrated, catalog, tmp_path):
    with migrated.conn.transaction(), pytest.raises(ExportError, match="outside any transaction"):
        export_sqlite(migrated.conn, catalog, tmp_path / "x.db")
    assert not (tmp_path / "x.db").exists()


def test_cli_refuses_the_apps_own_file_and_prints_a_summary(
    database, conn, catalog, tmp_path, monkeypatch, capsys
):
    apply_schema(conn, catalog)
    monkeypatch.chdir(tmp_path)
    for name in ("PG_DSN", "PG_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SQLITE_PATH", str(tmp_path / "twitter.db"))
    monkeypatch.setenv("PG_DATABASE", database)
    with pytest.raises(SystemExit) as refused:
        rollback.main(["--out", str(tmp_path / "twitter.db")])
    assert refused.value.code == 2 and "SQLITE_PATH" in capsys.readouterr().err
    assert rollback.main(["--out", "rollback.db"]) == 0
    assert "users" in capsys.readouterr().out and (tmp_path / "rollback.db").is_file()
    with pytest.raises(SystemExit):
        rollback.main(["--out", "rollback.db"])
    assert "exists" in capsys.readouterr().err


# --- single values: export, then the load's converters, give back exactly PostgreSQL's value ------


@pytest.mark.parametrize(
    ("jsonb_text", "compact"),
    [
        ('{"a": [1, 2.50, null], "b c": "x, y: z"}', '{"a":[1,2.50,null],"b c":"x, y: z"}'),
        ('{"q\\" ": "\\\\", "k": [true, false]}', '{"q\\" ":"\\\\","k":[true,false]}'),
        ('"a b"', '"a b"'),
        ("[]", "[]"),
    ],
)
def test_compact_json(jsonb_text, compact):
    assert compact_json(jsonb_text) == compact


@pytest.mark.parametrize(
    "text", ["infinity", "-infinity", "0044-03-15 00:00:00+00 BC", "20000-01-01 00:00:00+00"]
)
def test_timestamps_no_app_form_can_hold(text):
    assert format_timestamp(text) is None


@pytest.fixture(scope="module")
def pg(server):
    with psycopg.connect(**server, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("SET DateStyle = 'ISO, YMD'")
        yield conn


SQLITE, ISO = sqlite_values.SQLITE_HABIT, sqlite_values.ISO_HABIT


@pytest.mark.parametrize(
    ("kind", "postgres", "habit", "app"),
    [
        # booleans as the app stores them: 1/0 (app_writer: is_reply = randint(0, 1))
        ("boolean", "true", SQLITE, 1),
        ("boolean", "false", SQLITE, 0),
        ("integer", "-2147483648", SQLITE, -(2**31)),
        ("integer", "42", SQLITE, 42),
        ("text", "héllo, wörld\n", SQLITE, "héllo, wörld\n"),
        ("text", "", SQLITE, ""),
        # timestamps in UTC in the column's habit: DEFAULT CURRENT_TIMESTAMP's, or toISOString()'s
        ("timestamptz", "2024-03-05 19:21:09+02", SQLITE, "2024-03-05 17:21:09"),
        ("timestamptz", "2024-03-05 17:21:09+00", ISO, "2024-03-05T17:21:09.000Z"),
        ("timestamptz", "2024-03-05 17:21:09.123+00", ISO, "2024-03-05T17:21:09.123Z"),
        ("timestamptz", "2024-03-05 17:21:09.5+00", SQLITE, "2024-03-05T17:21:09.500Z"),  # digits kept
        ("timestamptz", "2024-03-05 17:21:09.123456+00", ISO, "2024-03-05T17:21:09.123456Z"),
        ("timestamptz", "1000-01-02 00:00:00+00", SQLITE, "1000-01-02 00:00:00"),
        ("timestamptz", "infinity", SQLITE, None),  # no app form holds it: the export keeps the text
        # JSON.stringify's compact text (app_writer: '{"likes":3}'); jsonb's own key order and digits
        ("jsonb", '{"likes": 3}', SQLITE, '{"likes":3}'),
        ("jsonb", '{"followers": 10, "bio": "x, y: z"}', SQLITE, '{"bio":"x, y: z","followers":10}'),
        ("jsonb", '[1.50, null, true, "a b", {"k": []}]', SQLITE, '[1.50,null,true,"a b",{"k":[]}]'),
        ("jsonb", '{"q\\"": "\\\\ \\u00e9"}', SQLITE, '{"q\\"":"\\\\ é"}'),
        ("jsonb", "1.0", SQLITE, "1.0"),
        ("jsonb", '"text"', SQLITE, '"text"'),
    ],
)
def test_each_postgresql_value_as_the_app_writes_it(pg, kind, postgres, habit, app):
    """The pure rules back, value by value: PostgreSQL's value, read as the export reads it, in the
    form the app itself writes to SQLite."""
    read = sql.SQL("SELECT " + sqlite_values.read_as(kind)).format(sql.SQL(f"%s::{kind}"))
    value = pg.execute(read, (postgres,)).fetchone()[0]
    rule = sqlite_values.writer_for(kind, habit)
    assert (value if rule is None else rule(value)) == app
    assert pg.execute(read, (None,)).fetchone()[0] is None  # NULL stays NULL, no rule applied


def test_the_habit_a_column_mostly_follows():
    assert sqlite_values.habit_of(["2024-03-05 17:21:09", "2024-03-05T17:21:09.000Z", "x"]) == SQLITE
    assert sqlite_values.habit_of(["2024-03-05T17:21:09.000Z", "2024-03-05T17:21:09Z"]) == ISO
    assert sqlite_values.habit_of([]) == SQLITE


@pytest.fixture(scope="module")
def app_column():
    """Store a value in an app-declared SQLite column and read it back, affinity applied."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE v (j JSON, d DATETIME)")

    def through(column: str, value: object) -> object:
        db.execute(f"INSERT INTO v ({column}) VALUES (?)", (value,))
        stored = db.execute(f"SELECT {column} FROM v").fetchone()[0]
        db.execute("DELETE FROM v")
        return stored

    return through


class Number(str):
    """A JSON number token, written as it is."""


def _dump(value: object) -> str:
    if isinstance(value, Number):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(_dump, value)) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {_dump(v)}" for k, v in value.items())
            + "}"
        )
    return json.dumps(value, ensure_ascii=False)


_numbers = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(
        ["1.0", "1.50", "1e-7", "-0.0", "1E+2", "0.000", "1e400", "12345678901234567890.0123456789"]
    ),
).map(Number)
_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=10)
_json = st.recursive(
    st.none() | st.booleans() | _numbers | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
).filter(lambda v: not isinstance(v, Number))  # top-level numbers: see the test without template


@settings(max_examples=100)
@given(value=_json)
def test_jsonb_exported_then_converted_is_the_same_jsonb(pg, app_column, value):
    stored = pg.execute("SELECT %s::jsonb::text", (_dump(value),)).fetchone()[0]
    text = compact_json(stored)
    assert not re.search(r"\s", re.sub(r'"(?:[^"\\]|\\.)*"', '""', text))  # JSON.stringify's compact form
    back = convert_json(app_column("j", text))
    same = pg.execute("SELECT %s::jsonb = %s::jsonb, %s::jsonb::text = %s", (back, stored, back, stored))
    assert same.fetchone() == (True, True)  # equal, and to the digit (1.0 stays 1.0)


_zones = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m))) | st.timezones()


@settings(max_examples=100)
@given(
    moment=st.datetimes(datetime(1000, 1, 2), datetime(9998, 12, 30), timezones=_zones),
    habit=st.sampled_from([sqlite_values.SQLITE_HABIT, sqlite_values.ISO_HABIT]),
)
def test_timestamptz_exported_then_converted_is_the_same_instant(pg, app_column, moment, habit):
    rendered = pg.execute("SELECT %s::timestamptz::text", (moment,)).fetchone()[0]
    text = format_timestamp(rendered, habit)
    if moment.microsecond == 0 and habit == sqlite_values.SQLITE_HABIT:
        assert PLAIN.fullmatch(text)
    else:
        assert ISO_MS_OR_US.fullmatch(text) and len(text) == (24 if moment.microsecond % 1000 == 0 else 27)
    back = convert_timestamp(app_column("d", text))
    assert pg.execute("SELECT %s::timestamptz = %s::timestamptz", (moment, back)).fetchone()[0]
    assert back == moment.astimezone(UTC)  # (== across zones is False in a DST gap, PEP 495)
