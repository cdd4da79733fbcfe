"""Fuzzing the whole load: hypothesis-made SQLite files -> snapshot -> load -> audit -> checks, all real.

Rows of every app table get any SQLite storage class in any column (NULL, integers up to 64 bits, reals
with inf, text with NUL or invalid UTF-8 or huge, BLOBs), deep and huge JSON, timestamps at the edges of
the calendar and odd keys (duplicates, empty, BLOBs, NUL, NULL). The app's own DDL (whose affinities
coerce some values) and an untyped copy without constraints (which keeps every value as bound) are both
tried. The only outcomes allowed: a row loaded exactly (equal to its converted source values) or
quarantined with a reason and its original values, the good rows beside them loaded, conservation holding
and the blocking checks passing.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import math
import os
import sqlite3
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as fuzzing
from hypothesis import strategies as st
from psycopg import sql

from migration_pipeline.catalog import SQLITE_APP_DDL, SQLITE_QUEUE_DDL, load_catalog
from migration_pipeline.connect.settings import ALL_TABLES
from migration_pipeline.connect.target import connect
from migration_pipeline.move.convert import InvalidText, Rejected, converter_for
from migration_pipeline.move.guard import ShrinkPolicy
from migration_pipeline.move.load import load_all
from migration_pipeline.move.source import Snapshot, quote, take_snapshot
from migration_pipeline.prove import proof
from migration_pipeline.switch.rollback import export_sqlite


class RawText(bytes):
    """Bytes to store with TEXT storage class (SQLite keeps them as they are, UTF-8 or not)."""


# --- values -------------------------------------------------------------------------------------------

HUGE_TEXT = "x" * 300_000
HUGE_WORDS = " ".join(f"w{i}" for i in range(160_000))  # ~1.1MB of distinct words: too big for a tsvector
DEEP = ["[" * n + "]" * n for n in (511, 512, 513, 1_024, 1_025, 2_000, 20_000)]
DEEP_OBJECT = '{"a":' * 600 + "1" + "}" * 600
JSON_EDGES = [
    "1e400", "[1e23, -0, 0.1, 1E2]", "1e131071", "1e131072", "1e-16383", "1e-16384", "0e-16384",
    "1" * 5_000, "[" + "9" * 20 + "]", '"\\u0000"', '"\\ud800"', '"\\ud83d\\ude80"', '{"a": 1, "a": 2}',
    "NaN", "{'a': 1}", "True", "", " ", "null", '"\\u00e9"', DEEP_OBJECT, '{"k": "' + "v" * 100_000 + '"}',
]  # fmt: skip
TIMESTAMP_EDGES = [
    "2024-03-05 17:21:09", "2024-03-05T17:21:09.123Z", "2024-03-05T17:21:09+23:59", "2024-03-05T17:21:09-23:59",
    "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "0001-01-01 00:00:00", "9999-12-31 23:59:59.999999",
    "Tue Mar 05 17:21:09 +2359 2024", "Tue Mar 05 17:21:09 +0000 2024", "2024-03-05T17:21:09.1234567Z",
    "٢٠٢٤-٠٣-٠٥ ١٧:٢١:٠٩", 253402300800, -62135596801, 1709659269000, 2**63 - 1, 1e300, -0.0,
]  # fmt: skip
INTEGER_TEXT_EDGES = ["+5", "-0", "007", "٣", "1" * 5_000, "2147483648", " 5", "5 ", "1e3"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)
EDGES = [HUGE_TEXT, HUGE_WORDS, *DEEP, *JSON_EDGES, *TIMESTAMP_EDGES, *INTEGER_TEXT_EDGES,
         RawText(b"\xed\xa0\x80"), RawText(b"\xff\xfe"), RawText(b"ok\x00"), b"\x00", b"", "\x00", 1e16, -0.0]  # fmt: skip
edge = st.sampled_from(EDGES)
anything = st.one_of(
    edge,
    edge,  # the edges, more often than the rest
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, 2**31 - 1, 2**31, -(2**31) - 1, 2**63 - 1, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=8),  # NUL, controls
    st.binary(max_size=12),
    st.binary(min_size=1, max_size=8).map(RawText),  # mostly invalid UTF-8
    json_values.map(lambda v: json.dumps(v)),
)
plausible = {
    "text": st.one_of(st.text(max_size=30), st.sampled_from(["", "hello world", "東京 🚀", "x" * 255])),
    "timestamptz": st.one_of(
        st.sampled_from(TIMESTAMP_EDGES),
        st.datetimes().map(lambda d: d.isoformat(sep=" ")),
        st.integers(min_value=-(10**12), max_value=10**13),
    ),
    "jsonb": st.one_of(json_values.map(json.dumps), st.sampled_from([*DEEP, *JSON_EDGES])),
    "boolean": st.sampled_from([0, 1, "0", "1", "true", "FALSE", "True", None]),
    "integer": st.one_of(
        st.integers(min_value=-(2**31), max_value=2**31 - 1), st.sampled_from(INTEGER_TEXT_EDGES)
    ),
}
TEXT_KEYS = ["k1", "k2", "k3", "", " ", "é", "k\x00", b"k1", b"\x00", b"", RawText(b"\xff"), 1, 1.5, None,
             "x" * 300, "rowid:1", "rowid:x", "X'00'", "good-u1"]  # fmt: skip
INT_KEYS = [1, 2, 3, 0, -1, 2**31, "4", "x", None, 1.0, 2.5, b"\x01", RawText(b"\xfe")]
GOOD = {
    "users": [("good-u1", "good one", '{"bio": "hi"}', None, "2024-03-05 17:21:09", "2024-03-05T17:21:09.000Z"),
              ("good-u2", "good two", None, "https://x", 1709659269, None)],
    "tweets": [("good-t1", "good-u1", "a good tweet", "2024-03-05 17:21:09", None, 0, '{"likes": 3}', None),
               ("good-t2", "good-u2", "another", "Tue Mar 05 17:21:09 +0000 2024", "u", "true", "[1, 2]", None)],
    "referral_codes": [("GOOD", "good-u1", 2, "2024-03-05 17:21:09")],
    "referral_usage_log": [(1_000_001, "GOOD", "good-u2", None)],
    "analysis_queue": [(1_000_001, "good-u1", "pending", 1, 3, 0, None, None, None, None)],
}  # fmt: skip


def column_values(spec, column):
    if column.name in spec.primary_key or any(column.name in fk.columns for fk in spec.foreign_keys):
        keys = INT_KEYS if column.kind == "integer" else TEXT_KEYS
        return st.one_of(st.sampled_from(keys), st.text(max_size=3))
    if column.name == "status":
        return st.sampled_from(["pending", "failed", "done", "Pending"])
    return plausible[column.kind]


def rows_for(spec):
    """Rows of plausible values in which up to two columns hold anything at all (a row is quarantined
    for its first bad value, so more would leave the later columns untried)."""
    row = st.tuples(*(column_values(spec, c) for c in spec.columns))
    hostile = st.lists(st.tuples(st.integers(0, len(spec.columns) - 1), anything), max_size=2)

    def spoil(pair):
        values, changes = list(pair[0]), pair[1]
        for index, value in changes:
            values[index] = value
        return tuple(values)

    return st.lists(st.tuples(row, hostile).map(spoil), max_size=10)


# --- the source file ----------------------------------------------------------------------------------


def write_source(path: Path, catalog, ddl: str, rows: dict[str, list[tuple]]) -> None:
    # autocommit: a row SQLite refuses with SQLITE_FULL (an AUTOINCREMENT table whose rowid is at its
    # maximum) rolls back the whole transaction it is in, which would take the good rows with it
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")
    if ddl == "app":
        db.executescript(SQLITE_APP_DDL + SQLITE_QUEUE_DDL)
    else:  # no declared types (no affinity: every value kept as bound) and no constraints
        for spec in catalog.tables:
            db.execute(f"CREATE TABLE {quote(spec.name)} ({', '.join(map(quote, spec.column_names))})")
    for spec in catalog.tables:
        cols = spec.column_names
        for row in [*GOOD.get(spec.name, []), *rows.get(spec.name, [])]:
            marks = ", ".join("CAST(? AS TEXT)" if isinstance(v, RawText) else "?" for v in row)
            values = [bytes(v) if isinstance(v, RawText) else v for v in row]
            # a row SQLite itself refuses (a non-integer in an INTEGER PRIMARY KEY) is not in the source
            with contextlib.suppress(sqlite3.Error):
                db.execute(
                    f"INSERT OR IGNORE INTO {quote(spec.name)} ({', '.join(cols)}) VALUES ({marks})", values
                )
    db.commit()
    db.close()


# --- the oracle ---------------------------------------------------------------------------------------


def exact_json(text: str) -> object:
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def same(kind: str, expected: object, actual: object) -> bool:
    if expected is None or actual is None:
        return expected is None and actual is None
    if kind == "jsonb":
        return _same_json(exact_json(expected), exact_json(actual))
    return type(expected) is type(actual) and expected == actual


def _same_json(a: object, b: object) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def original(value: object) -> object:
    """A raw_row value back as SQLite held it (the contract: bytes as base64)."""
    if isinstance(value, dict) and "$base64" in value:
        raw = base64.b64decode(value["$base64"])
        storage = value["$storage"]
        return (
            raw
            if storage == "blob"
            else InvalidText(raw)
            if storage == "text (invalid UTF-8)"
            else raw.decode()
        )
    if isinstance(value, dict) and "$float" in value:
        return float(value["$float"])
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return float(value)  # a REAL jsonb wrote out in full (1e300): SQLite integers are 64-bit
    return value


def same_original(a: object, b: object) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return (
        type(a) is type(b)
        and a == b
        or (isinstance(a, int | float) and isinstance(b, int | float) and a == b)
    )


def convert_row(spec, columns, values):
    try:
        out = []
        for name, value in zip(columns, values, strict=True):
            converted = converter_for(spec.column(name).kind, spec.column(name).max_length)(value)
            if converted is None and spec.column(name).not_null:
                return None
            out.append(converted)
        return out
    except Rejected:
        return None


def check_table(conn, spec, snapshot: Path, result, run_id: str) -> None:
    with Snapshot(snapshot) as snap:
        columns = snap.columns(spec.name)
        source = {row[0]: row[1:] for batch in snap.stream(spec.name, columns) for row in batch}
    assert result.source_rows == len(source) == result.loaded_rows + result.rejected_rows, spec.name
    recorded = conn.execute(
        "SELECT source_rows, loaded_rows, rejected_rows FROM migration_audit.table_loads"
        " WHERE run_id = %s AND table_name = %s",
        (run_id, spec.name),
    ).fetchone()
    assert recorded == (result.source_rows, result.loaded_rows, result.rejected_rows)
    rejected = conn.execute(
        "SELECT source_rowid, source_key, reason, kind, raw_row FROM migration_audit.rejected_rows"
        " WHERE run_id = %s AND table_name = %s",
        (run_id, spec.name),
    ).fetchall()
    assert len(rejected) == result.rejected_rows == len({r[0] for r in rejected}), spec.name
    for rowid, key, reason, kind, raw in rejected:
        assert key is not None and reason and kind and "unexpected" not in kind, (
            spec.name,
            key,
            reason,
            kind,
        )
        assert set(raw) == set(columns)
        for name, value in zip(columns, source[rowid], strict=True):
            assert same_original(original(raw[name]), value), (spec.name, key, name, raw[name], value)
    kinds = [spec.column(c).kind for c in columns]
    select = sql.SQL(", ").join(
        sql.SQL("{}::text" if k == "jsonb" else "{}").format(sql.Identifier(c))
        for c, k in zip(columns, kinds, strict=True)
    )
    target = conn.execute(sql.SQL("SELECT {} FROM {}").format(select, sql.Identifier(spec.name))).fetchall()
    assert len(target) == result.loaded_rows
    pk = [columns.index(c) for c in spec.primary_key]
    by_key = {tuple(r[i] for i in pk): r for r in target}
    assert len(by_key) == len(target)
    loaded_keys, rejected_rowids = set(), {r[0] for r in rejected}
    for rowid, values in source.items():
        if rowid in rejected_rowids:
            continue
        expected = convert_row(spec, columns, values)
        assert expected is not None, (spec.name, rowid, values)  # not quarantined, so it must convert
        key = tuple(expected[i] for i in pk)
        assert key not in loaded_keys, (spec.name, key)  # a duplicate key got through
        loaded_keys.add(key)
        actual = by_key[key]
        for name, kind, e, a in zip(columns, kinds, expected, actual, strict=True):
            assert same(kind, e, a), (spec.name, key, name, e, a)
    assert len(loaded_keys) == len(target)
    for good in GOOD.get(spec.name, []):
        assert (good[0],) in by_key, (spec.name, good[0])  # the good rows beside the hostile ones load


counter = itertools.count()
# each example replaces the previous one's tables in the same database: a confirmed shrink
REPLACE_ALL = ShrinkPolicy(confirmed=frozenset({ALL_TABLES}), confirmed_by=("test_fuzz",))
# about a second per example; FUZZ_EXAMPLES=500 (with pytest --timeout 0) fuzzes longer; locally hypothesis
# tries new rows every run, CI (derandomized) the same ones
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))


@fuzzing(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(data=st.data())
def test_every_row_is_loaded_exactly_or_quarantined_with_a_reason(settings, tmp_path, data):
    catalog = load_catalog()
    ddl = data.draw(st.sampled_from(["app", "untyped"]), label="ddl")
    rows = {spec.name: data.draw(rows_for(spec), label=spec.name) for spec in catalog.tables}
    workdir = tmp_path / f"ex{next(counter)}"
    workdir.mkdir()
    source = workdir / "app.db"
    write_source(source, catalog, ddl, rows)
    run_id = f"fuzz-{workdir.name}"
    snapshot = take_snapshot(source, workdir / f"{run_id}.snapshot.db").path
    with connect(settings) as conn:  # a connection per example: one failure does not spoil the next
        with Snapshot(snapshot) as snap:
            results = load_all(conn, snap, catalog, run_id, REPLACE_ALL)
        for spec in catalog.tables:
            check_table(conn, spec, snapshot, results[spec.name], run_id)
        blocking = {"rows_conserved", "referential_integrity", "content_parity", "jsonb_fidelity"}
        for spec in catalog.tables:
            for outcome in proof.run(conn, catalog, spec.name, snapshot, blocking):
                assert outcome.passed, (spec.name, outcome.name, outcome.problems)
        # the rollback export writes every loaded row and puts back every quarantined original it can
        exported = export_sqlite(conn, catalog, workdir / "rollback.db", template=snapshot)
    for name, table in exported.tables.items():
        assert table.rows == results[name].loaded_rows
        assert table.restored + table.skipped == results[name].rejected_rows, (name, table.skipped_keys)
