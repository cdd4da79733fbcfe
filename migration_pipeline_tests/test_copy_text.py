"""The column-at-a-time text COPY (move/copy_text.py) stages exactly what convert.py makes of each value.

The oracle is the value rules applied one value at a time (convert.py), each row's first failing column
(in column order) giving its reason, and the converted values written as binary COPY rows (psycopg's own
dumpers): the way every load staged rows before copy_text.py. Each example is a SQLite table of values
close to the fast paths' shapes and just outside them (February 30, 24:00, leap seconds, year 0,
fractional digits, offsets, Twitter dates with wrong weekdays, exponents, ``\\u0000`` and surrogate
escapes, deep and long JSON, NUL, tabs, backslashes, varchar's limit, integer bounds, odd booleans),
staged both ways into a real PostgreSQL under a session time zone with a half-hour offset. The staged
rows and the spooled rejections must be identical. Every test runs twice: with the compiled fast paths
(move/csrc/, which setup.py builds: a build that failed fails here) and with the Python ones they replace.
"""

from __future__ import annotations

import gc
import sqlite3
import string
import tracemalloc
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format

from migration_pipeline.connect.target import connect
from migration_pipeline.move import native
from migration_pipeline.move import stage as stage_module
from migration_pipeline.move.audit import Rejection
from migration_pipeline.move.convert import Rejected, converter_for, show
from migration_pipeline.move.keys import source_key
from migration_pipeline.move.source import Snapshot
from migration_pipeline.move.stage import Spool, create_stage, drop_stage, plan, stage_rows

TABLES = ("tweets", "analysis_queue")


@pytest.fixture(autouse=True, params=["compiled", "python"])
def fast_paths(request, monkeypatch) -> str:
    if request.param == "compiled":
        assert native.compiled is not None, "the compiled fast paths did not build (setup.py, move/csrc/)"
    else:
        monkeypatch.setattr(native, "compiled", None)
    return request.param


_digits = st.integers(0, 99).map(lambda n: f"{n:02d}")
_dates = st.tuples(st.integers(0, 10000), st.integers(0, 13), st.integers(0, 32)).map(
    lambda d: f"{d[0]:04d}-{d[1]:02d}-{d[2]:02d}"
)
_times = st.tuples(st.integers(0, 25), st.integers(0, 60), st.integers(0, 61)).map(
    lambda t: f"{t[0]:02d}:{t[1]:02d}:{t[2]:02d}"
)
TIMESTAMP_EDGES = [
    "Sat Feb 17 05:51:53 +0000 2024",
    "Sun Feb 17 05:51:53 +0000 2024",
    "Sat Feb 17 05:51:53 +0100 2024",
    "Thu Feb 30 05:51:53 +0000 2024",
    "Sat Feb 17 24:00:00 +0000 2024",
    "Mon Jan 01 00:00:00 +0000 0001",
    "Sat Jan 01 00:00:00 +0000 0000",
    "sat feb 17 05:51:53 +0000 2024",
    "2024-04-22T15:35:30Z",
    "2024-04-22 15:35:30.400Z",
    "9999-12-31T23:59:59.999Z",
    "0001-01-01T00:00:00.000Z",
    "2024-03-05 17:21:09",
    "2024-10-08T17:04:49.256Z",
    "Tue Mar 05 17:21:09 +0000 2024",
    "2024-02-29 23:59:59",
    "2023-02-29 00:00:00",
    "2024-02-30 00:00:00",
    "2024-01-01 24:00:00",
    "2024-06-30 23:59:60",
    "0000-01-01 00:00:00",
    "0001-01-01 00:00:00",
    "9999-12-31 23:59:59",
    "2024-10-08T17:04:49.25Z",
    "2024-10-08T17:04:49.2560Z",
    "2024-10-08T24:00:00.000Z",
    "2024-10-08T17:04:49.256+00:00",
    "2024-10-08 17:04:49.256Z",
    "2024-10-08T17:04:49.256z",
    " 2024-03-05 17:21:09",
    "2024-03-05 17:21:09 ",
    "２０２４-03-05 17:21:09",
]
# epoch numbers (seconds, milliseconds from 1e11) around the fast path's edges: 1970, the unit's switch,
# the end of 9999
EPOCH_EDGES = [0, -1, 1, 86_399, 86_400, 1_704_067_216, 1_713_742_263_015, 1_713_742_263_000,
               99_999_999_999, 100_000_000_000, 253_402_300_799, 253_402_300_800, 253_402_300_799_999,
               253_402_300_800_000, 2**63 - 1, -(2**63), 1.5, 1_713_742_263_015.5]  # fmt: skip
TIMESTAMP_EDGES += EPOCH_EDGES
_timestamps = st.one_of(
    st.builds(lambda d, t: f"{d} {t}", _dates, _times),
    st.builds(
        lambda d, t, f, z: f"{d}T{t}{f}{z}",
        _dates,
        _times,
        st.sampled_from(["", ".5", ".25", ".256", ".2560", ".123456"]),
        st.sampled_from(["Z", "", "+01:00", "z", " Z"]),
    ),
    st.sampled_from(TIMESTAMP_EDGES),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True),
    st.none(),
)
JSON_EDGES = [
    '{"likes":525,"lang":"en","tags":["a","b"],"ratio":0.635}',
    '{"a":1e5}',
    '{"a":1E400}',
    "[1e-99999]",
    "[1e1000000]",
    '{"n": 2E99999999999}',
    '"\\u0000"',
    '"\\ud800"',
    '"\\uD83D\\uDE00"',
    '"\\u00e9"',
    '{"a\\tb":"c\\\\d"}',
    "[1,]",
    "{'a': 1}",
    "NaN",
    " [1] ",
    "null",
    "",
    "[" * 600 + "]" * 600,
    "[" * 100 + "]" * 100,
    '"' + "x" * 10_050 + '"',
]
_json_texts = st.one_of(
    st.sampled_from(JSON_EDGES),
    st.text(alphabet=string.printable + "é\x00\u2028", max_size=30),
    st.integers(-(2**63), 2**63 - 1),
    st.none(),
)
TEXT_EDGES = ["x" * 255, "x" * 256, "é" * 50, "é" * 51, "a\x00b", "\\N", "\\", "\t\n\r", "", 7, b"\xff"]
_texts = st.one_of(
    st.text(alphabet="ab\t\n\r\\\x00é東 N", max_size=12),
    st.sampled_from(TEXT_EDGES),
    st.integers(-5, 5),
    st.binary(max_size=3),
    st.none(),
)
BOOLEAN_EDGES = [0, 1, 2, -1, "0", "1", "true", "TRUE", "False", "yes", "t", " 1", 1.0, 0.5, "ｔrue"]
INTEGER_EDGES = [-(2**31), 2**31 - 1, -(2**31) - 1, 2**31, 0, "12", "x", 1.0, 1.5]
_booleans = st.one_of(st.sampled_from(BOOLEAN_EDGES), st.none())
_integers = st.one_of(st.sampled_from(INTEGER_EDGES), st.none())
_BY_KIND = {"text": _texts, "timestamptz": _timestamps, "jsonb": _json_texts, "boolean": _booleans}


def _rows(spec, n):
    kinds = [_integers if c.kind == "integer" else _BY_KIND[c.kind] for c in spec.columns]
    return st.lists(st.tuples(*kinds), min_size=1, max_size=n)


class _JsonText(Dumper):
    """jsonb's binary COPY form: version 1, then the text (as loads wrote it before copy_text.py)."""

    format = Format.BINARY
    oid = 3802

    def dump(self, obj: str) -> bytes:
        return b"\x01" + obj.encode()


def _one_value_at_a_time(conn, batches, spec, columns, stage, spool, progress, refused, written) -> int:
    """The oracle, in stage_rows' place of ``_copy_rows``: convert.py value by value, binary COPY of the
    converted values, a row PostgreSQL refused (``refused``) failed as it was before."""
    rules = [(c, converter_for(spec.column(c).kind, spec.column(c).max_length), spec.column(c).not_null)
             for c in columns]  # fmt: skip
    types = ["int8"] + [{"varchar": "text", "serial": "int4"}.get(spec.column(c).pg_type, spec.column(c).pg_type)
                        for c in columns]  # fmt: skip
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        stage, sql.SQL(", ").join(map(sql.Identifier, ("_rowid", *columns)))
    )
    source_rows = 0
    with conn.cursor() as cur:
        cur.adapters.register_dumper(None, _JsonText)
        with cur.copy(copy_sql) as copy:
            copy.set_types(types)
            for batch in batches:
                for row in batch:
                    source_rows += 1
                    out = [row[0]]
                    for (name, convert, required), value in zip(rules, row[1:], strict=True):
                        try:
                            if row[0] in refused:
                                name, message = refused[row[0]]
                                raise Rejected(
                                    f"PostgreSQL refused the value: {message}", "refused by PostgreSQL"
                                )
                            converted = convert(value)
                            if converted is None and required:
                                raise Rejected("NULL in a NOT NULL column", "NULL in NOT NULL column")
                        except Rejected as err:
                            reason, kind = err.reason, f"{name}: {err.kind}"
                        except Exception as err:  # noqa: BLE001
                            reason = f"no rule could convert {show(value)} ({type(err).__name__}: {str(err)[:200]})"
                            kind = f"{name}: unexpected error"
                        else:
                            out.append(converted)
                            continue
                        key = source_key(spec, columns, row)
                        spool.add(Rejection(row[0], key, name, reason, kind), row[1:])
                        break
                    else:
                        copy.write_row(out)
                        written.append(row[0])
    return source_rows


def _staged(conn, spec, columns, stage_with) -> tuple[list, list]:
    stage = create_stage(conn, spec, columns)
    conn.execute("SET LOCAL TimeZone = 'America/St_Johns'")  # the COPY text must not depend on it
    conn.execute("SET LOCAL DateStyle = 'SQL, DMY'")
    with Spool(columns) as spool:
        stage_with(stage, spool)
        rejected = sorted(
            (r.rowid, r.source_key, r.column, r.reason, r.kind, raw) for r, raw in spool.drain()
        )
    conn.execute("SET LOCAL TimeZone = 'UTC'")  # to read every year back
    conn.execute("SET LOCAL DateStyle = 'ISO'")
    rows = conn.execute(sql.SQL("SELECT * FROM {} ORDER BY _rowid").format(stage)).fetchall()
    drop_stage(conn, stage)
    return rows, rejected


def _check(conn, catalog, tmp_path, table, rows) -> tuple[list, list]:
    spec = catalog.table(table)
    columns = spec.column_names
    path = tmp_path / f"{table}.db"
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as db:  # untyped: every value stays as bound
        db.execute(f"CREATE TABLE {table} ({', '.join(columns)})")
        db.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(columns))})", rows)
    db.close()
    with Snapshot(path) as snapshot, conn.transaction():

        def stage_all(stage, spool, read=snapshot.stream_columns):  # compiled: read by csrc/read.c
            stage_rows(conn, lambda: read(table, columns), spec, columns, stage, spool, None)

        by_column = _staged(conn, spec, columns, stage_all)
        with patch.object(stage_module, "_copy_rows", _one_value_at_a_time):  # the oracle reads rows
            by_value = _staged(conn, spec, columns, lambda *a: stage_all(*a, read=snapshot.stream))
    assert by_column == by_value
    return by_column


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_column_at_a_time_stages_what_the_value_rules_make(settings, catalog, tmp_path, data):
    with connect(settings) as conn:
        for table in TABLES:
            _check(conn, catalog, tmp_path, table, data.draw(_rows(catalog.table(table), 40)))


EDGES = {"text": TEXT_EDGES, "timestamptz": TIMESTAMP_EDGES, "jsonb": JSON_EDGES, "boolean": BOOLEAN_EDGES}
EDGES["integer"] = INTEGER_EDGES
ORDINARY = {"text": "ok", "timestamptz": "2024-03-05 17:21:09", "jsonb": "{}", "boolean": 1, "integer": 3}


def test_each_edge_value_alone(settings, catalog, tmp_path):
    """Every edge value in every column of its kind, in an otherwise ordinary row: some load, some not."""
    with connect(settings) as conn:
        for table in TABLES:
            spec = catalog.table(table)
            ordinary = [ORDINARY[c.kind] for c in spec.columns]
            rows = []
            for at, column in enumerate(spec.columns):
                for value in EDGES[column.kind]:
                    rows.append(tuple(ordinary[:at] + [value] + ordinary[at + 1 :]))
            rows = [(f"k{n}", *row[1:]) if table == "tweets" else row for n, row in enumerate(rows)]
            staged, rejected = _check(conn, catalog, tmp_path, table, rows)
            assert len(staged) > len(rows) // 3 and len(rejected) > len(rows) // 4


def test_a_whole_batch_of_the_apps_shapes(settings, catalog, tmp_path):
    """The fast paths: 6,000 rows (more than a batch) of the app's usual values, one odd row among them."""
    rows = []
    for n in range(6_000):
        created = ("2024-10-08T17:04:49.256Z", "2024-03-26 05:57:52", "Sat Feb 17 05:51:53 +0000 2024",
                   1_710_000_000 + n, 1_710_000_000_123)[n % 5]  # fmt: skip
        rows.append((f"t{n}", f"u{n % 7}", f"tab\there, back\\slash, new\nline, 東京 {n}", created,
                     None if n % 3 else f"https://x.com/{n}", ("true", 0, 1, "false")[n % 4],
                     '{"likes":525,"hashtags":["a"],"ratio":0.635}' if n % 2 else None,
                     "2024-03-26 05:57:52"))  # fmt: skip
    rows[4321] = ("t4321", "u1", "x", "2024-02-30 00:00:00", None, 1, None, None)
    with connect(settings) as conn:
        staged, rejected = _check(conn, catalog, tmp_path, "tweets", rows)
    assert len(staged) == 5_999 and [r[:3] for r in rejected] == [(4322, "t4321", "created_at")]


_utc_shaped = st.builds(
    lambda d, sep, t, frac: f"{d}{sep}{t}{frac}",
    st.one_of(st.dates().map(str), st.dates().map(str), st.dates().map(str), _dates),  # mostly real dates
    st.sampled_from([" ", "T"]),
    st.one_of(st.times().map(lambda t: t.strftime("%H:%M:%S")), _times),
    st.sampled_from(["", "", ".256Z", "Z", ".25Z"]),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_whole_column_of_utc_shapes(settings, catalog, tmp_path, data):
    """Columns every value of which looks like a UTC timestamp are checked in one pass: still exactly what
    the value rules make of each (February 30, 24:00, year 0 among them)."""
    spec = catalog.table("tweets")
    n = data.draw(st.integers(1, 30))
    stamps = data.draw(st.lists(_utc_shaped, min_size=n, max_size=n))
    rows = [(f"t{i}", "u1", "x", stamp, None, 1, None, stamp) for i, stamp in enumerate(stamps)]
    assert len(rows[0]) == len(spec.columns)
    with connect(settings) as conn:
        _check(conn, catalog, tmp_path, "tweets", rows)


_epochs = st.one_of(
    st.sampled_from(EPOCH_EDGES),
    st.integers(-5, 300_000),
    st.integers(99_999_999_000, 100_000_001_000),
    st.integers(0, 2**48),
    st.integers(253_402_300_700_000, 253_402_300_900_000),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_column_mixing_epochs_and_texts(settings, catalog, tmp_path, data):
    """A column of epoch numbers, UTC texts and Twitter's dates side by side (each kind takes a fast path
    of its own): exactly what the value rules make of each."""
    n = data.draw(st.integers(1, 30))
    values = st.one_of(_epochs, _utc_shaped, st.sampled_from(TIMESTAMP_EDGES[:8]))
    stamps = data.draw(st.lists(values, min_size=n, max_size=n))
    rows = [(f"t{i}", "u1", "x", stamp, None, 1, None, stamp) for i, stamp in enumerate(stamps)]
    with connect(settings) as conn:
        _check(conn, catalog, tmp_path, "tweets", rows)


def test_failed_values_do_not_keep_their_batch(catalog):
    """A failure kept for the spool must not hold its batch: with the garbage collector off, 5 batches of
    2,000 rows (1 KB of text each) whose dates and JSON are all broken leave almost nothing behind (they
    held 7 KB a row when the failures kept their tracebacks)."""
    spec = catalog.table("tweets")
    batch = [(n, f"t{n}", "u1", "x" * 1_000 + str(n), "2024-02-30 00:00:00", None, 1, "{'a': 1}", "someday")
             for n in range(2_000)]  # fmt: skip
    converting = plan(spec, spec.column_names)
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        for _ in range(5):
            converted = converting.convert(batch)
            assert len(converted.failures) == 2_000 and not converted.data
        del converted
        left = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        gc.enable()
    assert left < 4 << 20, f"{left / 2**20:.0f} MB left behind"
