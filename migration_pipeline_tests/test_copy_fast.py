"""The compiled fast paths (move/csrc/) answer exactly as the Python they replace, value by value.

test_copy_text.py stages whole tables both ways through PostgreSQL; this compares the functions
themselves on many more generated values, with no server: each timestamp's COPY text against
copy_time.py's, every JSON text the compiled scan vouches for against convert.py (which must keep it
unchanged), the text checks and the COPY lines against copy_text.py's. It also holds the scan to vouching
for the JSON apps write, so the fast path cannot quietly stop being taken.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migration_pipeline.move import copy_text, copy_time, copy_write, native
from migration_pipeline.move.convert import Rejected, convert_json

compiled = native.compiled


@pytest.fixture(autouse=True)
def _built():
    assert compiled is not None, "the compiled fast paths did not build (setup.py, move/csrc/)"


# --- timestamps -------------------------------------------------------------------------------------

_dates = st.tuples(st.integers(0, 10_000), st.integers(0, 13), st.integers(0, 32)).map(
    lambda d: f"{d[0]:04d}-{d[1]:02d}-{d[2]:02d}"
)
_clock = st.tuples(st.integers(0, 25), st.integers(0, 61), st.integers(0, 61)).map(
    lambda t: f"{t[0]:02d}:{t[1]:02d}:{t[2]:02d}"
)
_weekday = st.sampled_from(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "sat", "Xyz"])
_month = st.sampled_from(
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec", "Foo"]
)
_stamps = st.one_of(
    st.builds(
        lambda d, sep, t, tail: f"{d}{sep}{t}{tail}",
        st.one_of(st.dates().map(str), _dates),
        st.sampled_from([" ", "T", "t", "_"]),
        st.one_of(st.times().map(lambda t: t.strftime("%H:%M:%S")), _clock),
        st.sampled_from(["", "Z", ".256Z", ".25Z", ".2560Z", ".256", "z", "+00", " "]),
    ),
    st.builds(
        lambda w, m, d, t, zone, y: f"{w} {m} {d:02d} {t} {zone} {y:04d}",
        _weekday,
        _month,
        st.integers(0, 32),
        _clock,
        st.sampled_from(["+0000", "+0100", "-0000"]),
        st.integers(0, 10_000),
    ),
    # real Twitter dates: the weekday right, so the fast path answers
    st.datetimes().map(lambda m: m.strftime("%a %b %d %H:%M:%S +0000 %Y")),
    st.integers(-(2**64), 2**64),
    st.integers(-5, 2**48),
    st.integers(99_999_999_000, 100_000_001_000),
    st.integers(253_402_300_700_000, 253_402_300_900_000),
    st.sampled_from([2**63 - 1, -(2**63), 253_402_300_799, 253_402_300_800, True, False, 1.5, None, b"x"]),
    st.text(alphabet="0123456789-: TZ.", max_size=26),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_stamps, min_size=1, max_size=50))
def test_timestamps_as_copy_time_reads_them(values):
    expected = copy_time._utc_column(values) or copy_time._mixed_column(values)
    assert compiled.timestamp_texts(values) == expected


def test_every_day_of_four_centuries():
    """The calendar: every date of 1970-2370 as an epoch in seconds and in milliseconds."""
    days = range(146_097)
    epochs = [day * 86_400 + 3_723 for day in days] + [day * 86_400_000 + 100_000_000_007 for day in days]
    assert compiled.timestamp_texts(epochs) == copy_time._mixed_column(epochs)


_EDGE_DATES = [f"{y:04d}-{m:02d}-{d:02d}" for y in (0, 1, 1900, 2000, 2023, 2024, 2100, 9999)
               for m, d in ((1, 1), (2, 28), (2, 29), (2, 30), (4, 30), (4, 31), (12, 31), (0, 1), (13, 1), (1, 0), (1, 32))]  # fmt: skip
_EDGE_CLOCKS = ["00:00:00", "23:59:59", "24:00:00", "23:60:00", "23:59:60", "9:00:00", "0a:00:00"]
_EPOCH_EDGES = [0, -1, 99_999_999_999, 100_000_000_000, 100_000_000_999, 253_402_300_799, 253_402_300_799_999,
                253_402_300_800_000, 253_402_300_800_999, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1]  # fmt: skip


def test_timestamp_edges():
    """Every edge of every part of each shape, in every combination: dates that do not exist (Feb 29 of
    1900 and 2100, year 0), 24:00 and leap seconds, separators, fractions and zones, Twitter's weekdays
    and epochs at the units' switch and at the end of 9999."""
    texts = [f"{d}{sep}{t}{tail}" for d in _EDGE_DATES for t in _EDGE_CLOCKS for sep in (" ", "T", "t")
             for tail in ("", "Z", ".256Z", ".25Z", ".256", "z", "+00:00")]  # fmt: skip
    texts += [f"{day} {month} {d[8:]} {t} +0000 {d[:4]}" for d in _EDGE_DATES for t in _EDGE_CLOCKS[:3]
              for day in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun") for month in ("Feb", "Dec", "Foo")]  # fmt: skip
    texts += [t.replace("+0000", "+0100") for t in texts[-50:]]
    expected = [copy_time._timestamp_text(t) for t in texts]
    assert compiled.timestamp_texts(texts) == expected
    assert sum(e is not None for e in expected) > 500  # the edges include plenty the fast path takes
    assert compiled.timestamp_texts(_EPOCH_EDGES) == [copy_time._epoch_text(e) for e in _EPOCH_EDGES]


# --- JSON ---------------------------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
_documents = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)
_JSON_CHARACTERS = '{}[]",:\\/ \t\n\r0123456789.eE+-truefalsnbu' + "dDaAfF\x00\x1f\u2028é😀\ud800"
_mutations = st.lists(
    st.tuples(
        st.integers(0, 10_000),
        st.sampled_from(["insert", "delete", "replace"]),
        st.sampled_from(_JSON_CHARACTERS),
    ),
    max_size=3,
)


def _mutated(text: str, mutations) -> str:
    for at, how, char in mutations:
        at = at % (len(text) + 1)
        if how == "insert":
            text = text[:at] + char + text[at:]
        elif how == "delete":
            text = text[:at] + text[at + 1 :]
        else:
            text = text[:at] + char + text[at + 1 :]
    return text


_json_texts = st.one_of(
    st.builds(
        lambda doc, ascii_only, indent, mutations: _mutated(
            json.dumps(doc, ensure_ascii=ascii_only, indent=indent), mutations
        ),
        _documents,
        st.booleans(),
        st.sampled_from([None, 1]),
        _mutations,
    ),
    st.text(alphabet=_JSON_CHARACTERS, max_size=20),
    st.sampled_from(
        [
            '"\\ud83d\\ude00"',
            '"\\ud83d"',
            '"\\ude00"',
            '"\\ud83d\\u0041"',
            '"\\u0000"',
            '"\\\\u0000"',
            "1e200",
            "1e201",
            "-1E-200",
            "1e+0200",
            "1e-201",
            "1" * 100 + "e200",
            "0." + "0" * 99 + "1e-200",
            "0.0e0",
            "1" * 100,
            "1" * 101,
            "1" * 50 + "." + "1" * 50,
            "[" * 512 + "]" * 512,
            "[" * 513 + "]" * 513,
            '"\\ud83ddc00"',
            '"\\ud83d\\ud83d"',
            "[1:2]",
            '{"a":1:"b":2}',
            '{"a",1}',
            '["a":1]',
            '"a\x1fb"',
            '"a\x7fb"',
            "1e99999999999",
            "1e-16384",
            '{"a":' * 512 + "1" + "}" * 512,
            "01",
            "-",
            "1.",
            ".5",
            "+1",
            "[1,]",
            "{,}",
            '{"a"}',
            '{"a":}',
            "tru",
            "nul",
            "true false",
            "",
            " ",
            "\ufeff[]",
        ]
    ),  # fmt: skip
)


def _kept(text: str) -> bool:
    try:
        return convert_json(text) == text
    except Rejected:
        return False


@settings(max_examples=2_000, deadline=None)
@given(_json_texts)
def test_json_it_vouches_for_is_kept_as_it_is(text):
    if not _json_slow([text]):
        assert _kept(text), text


@settings(max_examples=300, deadline=None)
@given(_documents, st.booleans())
def test_it_vouches_for_the_json_apps_write(doc, ascii_only):
    """json.dumps / JSON.stringify output with numbers of at most 100 digits and exponents of at most 200:
    the fast path must be taken."""
    text = json.dumps(doc, ensure_ascii=ascii_only)
    if "\\u0000" in text or any(len(n) > 100 or _exponent(n) > 200 for n in _numbers(doc)):
        return
    assert _json_slow([text]) == [], text


def _exponent(number: str) -> int:
    return abs(int(number.lower().split("e")[1])) if "e" in number.lower() else 0


def _numbers(doc) -> list[str]:
    if isinstance(doc, list | dict):
        return [n for item in (doc.values() if isinstance(doc, dict) else doc) for n in _numbers(item)]
    return [json.dumps(doc)] if isinstance(doc, int | float) and not isinstance(doc, bool) else []


def _json_slow(values: list) -> list[int]:
    return compiled.texts_slow(values, True, -1, True)[0]


def test_the_json_texts_it_leaves_to_convert_py():
    assert compiled.texts_slow(["{}", "[1]", "[1,]", "{'a': 1}", None, 5, '"a\\tb"'], True, -1, True) == (
        [2, 3, 5],
        True,
        True,
    )
    assert compiled.texts_slow(["{}", None], False, -1, True) == ([1], False, False)


# --- text columns and COPY lines ------------------------------------------------------------------------

_field_texts = st.text(alphabet="ab\t\n\r\\\x00é東😀 N\x7f\xff\u0100", max_size=12)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.one_of(_field_texts, st.none(), st.just(3), st.just(b"x")), max_size=20),
    st.booleans(),
    st.sampled_from([-1, 0, 3, 12]),
)
def test_the_texts_it_keeps_as_they_are(values, nulls_allowed, max_length):
    """A text is kept when it holds no NUL and is short enough, a NULL where the column takes them;
    anything else goes one by one through convert.py. (Whether a kept text and its escaping load as
    convert.py's would: test_copy_text.py, through PostgreSQL.)"""

    def kept(v) -> bool:
        if v is None:
            return nulls_allowed
        return type(v) is str and "\x00" not in v and (max_length < 0 or len(v) <= max_length)

    slow = [i for i, v in enumerate(values) if not kept(v)]
    texts = [v for v in values if kept(v) and v is not None]
    special = copy_text._any_special("".join(texts))
    nulls = any(v is None for v in values) and nulls_allowed
    assert compiled.texts_slow(values, nulls_allowed, max_length, False) == (slow, special, nulls)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_stamps, st.none()), max_size=30))
def test_the_missing_as_python_finds_them(values):
    assert compiled.missing(values) == [i for i, v in enumerate(values) if v is None]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(), st.one_of(st.none(), st.text(max_size=3))), max_size=20))
def test_columns_as_itemgetter_makes_them(rows):
    assert compiled.columns(rows, 2) == _python(copy_text._transposed, rows, 2)
    with pytest.raises(TypeError):
        compiled.columns([*rows, (1,)], 2)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_copy_lines_as_copy_text_joins_them(data):
    rows = data.draw(st.integers(0, 12))
    width = data.draw(st.integers(1, 5))
    rowids = data.draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=rows, max_size=rows))
    columns = [rowids] + [
        [copy_text.escape(t) for t in data.draw(st.lists(_field_texts, min_size=rows, max_size=rows))]
        for _ in range(width)
    ]
    failed = data.draw(st.sets(st.integers(0, max(rows - 1, 0)))) if rows else set()
    for i in failed:
        columns[1][i] = None  # a failed row's failed value
    expected = _python_lines([list(c) for c in columns], failed)
    assert compiled.copy_lines(columns, failed or None) == expected
    data, longest = expected
    assert longest == max(map(len, data.split(b"\n")))  # the longest line's bytes, newline left out


def _python_lines(columns, failed) -> bytes:
    return _python(copy_write.lines, columns, dict.fromkeys(failed), "utf-8")


def _python(function, *args):
    """``function(*args)`` with copy_text.py's and copy_time.py's own fast paths."""
    compiled_now = native.compiled
    native.compiled = None
    try:
        return function(*args)
    finally:
        native.compiled = compiled_now


@pytest.mark.parametrize("character", ["é", "ā", "東", "😀"])
def test_copy_lines_of_long_texts_of_every_width(character):
    """Texts far longer than a row's slack (its rowid's 20 digits, its tabs): each character takes its
    full width in UTF-8 (an astral one 4 bytes; the buffer was once sized for 3)."""
    columns = [[1, 2], [character * 1000, "x" + character * 5000], ["a", character * 3]]
    expected = _python_lines([list(c) for c in columns], set())
    assert compiled.copy_lines(columns, None) == expected


def test_a_text_utf8_cannot_encode_fails_as_str_encode_does():
    with pytest.raises(UnicodeEncodeError):
        compiled.copy_lines([[1], ["a\ud800"]], None)
    with pytest.raises(TypeError):
        compiled.copy_lines([[1], [2.5]], None)
    with pytest.raises(TypeError):
        compiled.copy_lines([[1, 2], ["a"]], None)
    assert compiled.copy_lines([[1], ["x"]], {0}) == (b"", 0)
    assert compiled.copy_lines([], None) == (b"", 0)
    assert compiled.copy_lines([[7, 8], ["é", "x\\t"]], None) == (b"7\t\xc3\xa9\n8\tx\\t\n", 5)


# --- binary COPY tuples (their content through PostgreSQL: test_copy_text.py) ----------------------------


def test_copy_binary_writes_the_fields_it_can_read_and_refuses_others():
    row = [[7], ["a\\tb"], ["2000-01-01 00:00:01.5+00"], ["t"], ["-2"], ["[1]"]]
    data, longest = compiled.copy_binary(row, "qtTbij", None)
    assert longest == len(data) == 2 + 12 + 7 + 12 + 5 + 8 + 8
    assert data[14:21] == b"\x00\x00\x00\x03a\tb"  # the text's escape undone
    assert data[25:33] == (1_500_000).to_bytes(8, "big")  # µs since 2000-01-01 UTC
    assert data[-4:] == b"\x01[1]"  # jsonb: its version, then the text
    assert compiled.copy_binary([[7], ["\\N"]], "qT", None)[0].endswith(b"\xff\xff\xff\xff")  # NULL
    for field, kind in [("2000-02-30 00:00:00+00", "T"), ("2000-01-01 00:00:00+01", "T"), ("x\\q", "t"),
                        ("true", "b"), ("2147483648", "i"), ("1.5", "i")]:  # fmt: skip
        with pytest.raises(ValueError, match="not the COPY text"):
            compiled.copy_binary([[1], [field]], "q" + kind, None)


def test_a_row_binary_cannot_write_fails_alone():
    """A field binary.c cannot read (a converter's bug) costs its row, never the batch."""
    columns = [[1, 2, 3], ["a", "b", "c"], ["2024-01-01 00:00:00+00", "someday", "2024-01-01T00:00:00Z"]]
    failures: dict = {}
    data, _ = copy_write.tuples(columns, failures, "qtT", ("name", "created_at"))
    assert list(failures) == [1] and failures[1][0] == "created_at" and failures[1][2] == "someday"
    assert data == compiled.copy_binary(columns, "qtT", {1})[0]


def test_every_column_kind_has_a_binary_form():
    """A kind the catalog maps a PostgreSQL type to must have its binary COPY letter (or every load fails)."""
    from migration_pipeline import catalog

    assert set(catalog._KINDS.values()) <= set(copy_write._TYPES)
