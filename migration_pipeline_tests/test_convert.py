"""The value rules, value by value, including the ugly values."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migration_pipeline.convert import (
    InvalidText,
    Rejected,
    convert_boolean,
    convert_integer,
    convert_json,
    convert_timestamp,
    decode_text,
    text_converter,
)

UTC_MOMENT = datetime(2024, 3, 5, 17, 21, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-05 17:21:09", UTC_MOMENT),  # CURRENT_TIMESTAMP: UTC
        ("2024-03-05 17:21:09.250", UTC_MOMENT + timedelta(milliseconds=250)),
        ("2024-03-05T17:21:09.000Z", UTC_MOMENT),  # toISOString()
        ("2024-03-05T17:21:09Z", UTC_MOMENT),
        ("2024-03-05T17:21:09", UTC_MOMENT),
        ("2024-03-05T19:21:09+02:00", UTC_MOMENT),
        ("2024-03-05T12:21:09-0500", UTC_MOMENT),
        ("2024-03-05T17:21:09.123456Z", UTC_MOMENT + timedelta(microseconds=123456)),
        ("2024-03-05T17:21:09.123456000Z", UTC_MOMENT + timedelta(microseconds=123456)),
        ("2024-03-05 17:21:09+00:00", UTC_MOMENT),
        ("Tue Mar 05 17:21:09 +0000 2024", UTC_MOMENT),
        ("Tue Mar 05 18:21:09 +0100 2024", UTC_MOMENT),
        (1709659269, UTC_MOMENT),  # epoch seconds
        (1709659269.5, UTC_MOMENT + timedelta(milliseconds=500)),
        (1709659269000, UTC_MOMENT),  # epoch milliseconds: too large to be seconds
        (1709659269250, UTC_MOMENT + timedelta(milliseconds=250)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (-86400, datetime(1969, 12, 31, tzinfo=UTC)),
        (None, None),
    ],
)
def test_timestamps_accepted(value, expected):
    result = convert_timestamp(value)
    assert result == expected
    if result is not None:
        assert result.tzinfo is not None


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "",
        "2024-02-30 10:00:00",  # no such day
        "2024-13-01T00:00:00Z",
        "2024-03-05",  # a date alone is not a timestamp
        "03/05/2024 17:21",
        "2024-03-05T17:21:09.1234567Z",  # sub-microsecond digits would be rounded away
        " 2024-03-05 17:21:09",
        "2024-03-05 17:21",
        "Wed Mar 05 17:21:09 +0000 2024",  # weekday contradicts the date
        "Tue Mar 05",
        "1709659269",  # epoch as text: not one of the forms
        10**20,
        float("inf"),
        float("nan"),
        b"\x00\x01",
        InvalidText(b"\xff2024"),
    ],
)
def test_timestamps_rejected(value):
    with pytest.raises(Rejected) as err:
        convert_timestamp(value)
    assert err.value.kind in ("invalid timestamp", "wrong storage type", "invalid UTF-8")
    assert err.value.reason


@given(st.datetimes(min_value=datetime(1974, 1, 1), max_value=datetime(5000, 1, 1), timezones=st.just(UTC)))
def test_timestamps_round_trip_every_habit(moment):
    """Every way the app writes an instant converts back to that exact instant. (Epoch numbers are
    unambiguous between 1973-03-03, the first millisecond value >= 1e11, and the year 5138, the first
    second value >= 1e11; outside that window the magnitude rule decides, see EPOCH_MS_THRESHOLD.)"""
    assert convert_timestamp(moment.strftime("%Y-%m-%d %H:%M:%S.%f")) == moment
    assert convert_timestamp(moment.isoformat().replace("+00:00", "Z")) == moment
    shifted = moment.astimezone(timezone(timedelta(hours=-7, minutes=-30)))
    assert convert_timestamp(shifted.isoformat()) == moment
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    whole = moment.replace(microsecond=0)
    assert convert_timestamp((whole - epoch) // timedelta(seconds=1)) == whole
    millis = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    assert convert_timestamp((millis - epoch) // timedelta(milliseconds=1)) == millis


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            '{"a": 1, "b": [true, null, 2.5e3], "c": "ünï 🚀"}',
            {"a": 1, "b": [True, None, 2500.0], "c": "ünï 🚀"},
        ),
        ("null", None),  # JSON null, kept as JSON null (the text is returned)
        ("[]", []),
        ('"just a string"', "just a string"),
        ("123456789012345678901234567890", 123456789012345678901234567890),  # beyond 64 bits: still JSON
        ('{"escaped": "\\u00e9\\ud83d\\ude80"}', {"escaped": "é🚀"}),
        (5, 5),  # JSON.stringify(5) stored by SQLite's numeric affinity
        (2.5, 2.5),
    ],
)
def test_json_accepted(value, expected):
    text = convert_json(value)
    assert isinstance(text, str)
    assert json.loads(text) == expected


def test_json_sql_null_stays_null():
    assert convert_json(None) is None


@pytest.mark.parametrize(
    "value",
    [
        "NaN",
        '{"a": NaN}',
        '{"a": Infinity}',
        "{'a': 1}",  # single quotes
        "None",  # Python repr
        "{'a': True}",
        '{"a": 1,}',
        '{"a": [1, 2',
        "",
        "undefined",
        '"\\u0000"',  # jsonb cannot store NUL
        '{"k\\u0000": 1}',
        '"\\ud800"',  # lone surrogate
        b"{}",
        InvalidText(b'{"a": "\xff"}'),
        float("inf"),
    ],
)
def test_json_rejected(value):
    with pytest.raises(Rejected):
        convert_json(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, False),
        (1, True),
        ("0", False),
        ("1", True),
        ("true", True),
        ("FALSE", False),
        ("True", True),
        (None, None),
    ],
)
def test_booleans_accepted(value, expected):
    assert convert_boolean(value) is expected


@pytest.mark.parametrize("value", [2, -1, "yes", "t", "", " 1", 0.5, b"\x01", InvalidText(b"\xfftrue")])
def test_booleans_rejected(value):
    with pytest.raises(Rejected):
        convert_boolean(value)


@pytest.mark.parametrize(
    ("value", "expected"), [(0, 0), (-5, -5), (3.0, 3), ("42", 42), (2**31 - 1, 2**31 - 1)]
)
def test_integers_accepted(value, expected):
    assert convert_integer(value) == expected


@pytest.mark.parametrize("value", [2**31, -(2**31) - 1, 3.5, "step three", "4 ", b"1", float("nan")])
def test_integers_rejected(value):
    with pytest.raises((Rejected, ValueError)):
        convert_integer(value)


def test_text_rules():
    convert = text_converter(5)
    assert convert("héllo") == "héllo"  # five characters, seven bytes: the limit counts characters
    assert convert(None) is None
    assert convert(12) == "12"
    for bad in ("toolong", "a\x00b", b"blob", InvalidText(b"\xff\xfe"), 1.5):
        with pytest.raises(Rejected):
            convert(bad)
    assert text_converter(None)("x" * 100_000) == "x" * 100_000


def test_decode_text_keeps_invalid_bytes():
    assert decode_text("ok ü".encode()) == "ok ü"
    bad = decode_text(b"\xff\xfeuser")
    assert isinstance(bad, InvalidText) and bytes(bad) == b"\xff\xfeuser"
