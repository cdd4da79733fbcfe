"""Pure value converters: one SQLite value in, the exact PostgreSQL value out, or :class:`Rejected`.

In:  a value as Python's sqlite3 returns it (None, int, float, str, bytes for BLOBs, or
     :class:`InvalidText` for TEXT that is not valid UTF-8, see :func:`decode_text`).
Out: a value psycopg writes into a COPY stream for the target type: ``datetime`` (aware) for
     timestamptz, the original JSON text for jsonb, ``bool``, ``int``, ``str``. NULL stays None.
Fails: :class:`Rejected` with a reason a person understands. Nothing is guessed, nothing is turned into
     NULL, no precision is dropped: a value these rules do not cover is rejected (contract, "Value rules").
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache

import orjson

Converter = Callable[[object], object]

INT4_MIN, INT4_MAX = -(2**31), 2**31 - 1
# Epoch values at or above this magnitude are milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973.
EPOCH_MS_THRESHOLD = 100_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_ISO = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}"
    r"(?P<frac>\.\d+)?"
    r"(?P<tz>Z|[+-]\d{2}:?\d{2})?"
)
_TWITTER = re.compile(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} \d{2} \d{2}:\d{2}:\d{2} [+-]\d{4} \d{4}")
_INTEGER_TEXT = re.compile(r"[+-]?\d+")
_ACCEPTED_TIMESTAMPS = (
    "accepted: 'YYYY-MM-DD HH:MM:SS[.fff]' (UTC), ISO 8601 with T/Z/±HH:MM, Unix epoch seconds or "
    "milliseconds, Twitter's 'Tue Mar 05 17:21:09 +0000 2024'"
)


class Rejected(ValueError):
    """A value that cannot be loaded exactly; ``reason`` says why, for a person."""

    def __init__(self, reason: str, kind: str = "invalid value"):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # a short category for counting rejections by reason


class InvalidText(bytes):
    """TEXT storage whose bytes are not valid UTF-8 (kept as the original bytes)."""


def decode_text(raw: bytes) -> str | InvalidText:
    """sqlite3 ``text_factory``: decode TEXT as UTF-8 without aborting the whole cursor on bad bytes."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return InvalidText(raw)


def show(value: object, limit: int = 60) -> str:
    """A short, printable rendering of a value for a rejection reason."""
    if isinstance(value, InvalidText):
        text = f"invalid UTF-8 bytes {bytes(value[:limit])!r}"
    elif isinstance(value, bytes):
        text = f"BLOB of {len(value)} bytes"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _not_text(value: object) -> Rejected:
    if isinstance(value, InvalidText):
        return Rejected(f"text is not valid UTF-8 ({show(value)})", "invalid UTF-8")
    return Rejected(f"unexpected {type(value).__name__} value {show(value)}", "wrong storage type")


# --- timestamps -------------------------------------------------------------------------------


def _from_epoch(value: float) -> datetime:
    if not math.isfinite(value):
        raise Rejected(f"epoch value {value!r} is not a finite number", "invalid timestamp")
    unit = 1_000 if abs(value) >= EPOCH_MS_THRESHOLD else 1_000_000  # microseconds per unit of value
    try:
        # integers stay exact (no float division); reals round to PostgreSQL's microsecond
        micros = value * unit if isinstance(value, int) else round(value * unit)
        return _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise Rejected(
            f"epoch value {value!r} is outside the supported date range", "invalid timestamp"
        ) from None


def _from_text(text: str) -> datetime:
    match = _ISO.fullmatch(text)
    if match:
        frac = match["frac"]
        if frac and len(frac) > 7:
            if frac[7:].strip("0"):
                raise Rejected(
                    f"timestamp {show(text)} has sub-microsecond digits PostgreSQL would round",
                    "invalid timestamp",
                )
            text = text[: match.start("frac") + 7] + text[match.end("frac") :]
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise Rejected(
                f"timestamp {show(text)} is not a valid date or time", "invalid timestamp"
            ) from None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    if _TWITTER.fullmatch(text):
        try:
            parsed = datetime.strptime(text, "%a %b %d %H:%M:%S %z %Y")
        except ValueError:
            raise Rejected(
                f"timestamp {show(text)} is not a valid date or time", "invalid timestamp"
            ) from None
        if parsed.strftime("%a") != text[:3]:
            raise Rejected(f"timestamp {show(text)}: weekday does not match the date", "invalid timestamp")
        return parsed
    raise Rejected(
        f"timestamp {show(text)} is in no accepted format ({_ACCEPTED_TIMESTAMPS})", "invalid timestamp"
    )


def convert_timestamp(value: object) -> datetime | None:
    """SQLite DATETIME value -> aware ``datetime`` for timestamptz. Naive text is UTC (SQLite's
    ``CURRENT_TIMESTAMP``); numbers are Unix epoch seconds, or milliseconds when too large to be seconds."""
    if value is None:
        return None
    if isinstance(value, str):
        return _from_text(value)
    if isinstance(value, int | float):
        return _from_epoch(value)
    raise _not_text(value)


# --- JSON -------------------------------------------------------------------------------------


def _reject_nan(token: str) -> object:
    raise ValueError(f"{token} is not valid JSON")


# Deepest JSON nesting loaded: PostgreSQL stores deeper, but Python (psycopg's jsonb loader, the checks'
# re-parse, the rollback export) recurses once per level and must never fail on a loaded value.
MAX_JSON_DEPTH = 512


def json_depth(obj: object) -> int:
    """How deeply a parsed JSON value nests arrays and objects (a scalar is 0; iterative: any depth)."""
    deepest, pending = 0, [(obj, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, list | dict):
            deepest = max(deepest, depth)
            pending.extend(
                (child, depth + 1) for child in (item.values() if isinstance(item, dict) else item)
            )
    return deepest


def json_exact(text: str) -> object:
    """Parse JSON text for comparison: numbers as exact decimals (``Decimal``/``int``), as jsonb keeps
    them, so that ``1.7976931348623157e+308`` equals the 309 digits PostgreSQL prints for it."""
    return json.loads(text, parse_float=Decimal)


def _has_nul(obj: object) -> bool:
    """Whether a parsed JSON value holds NUL in any string or key (iterative: any depth)."""
    pending = [obj]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            if any("\x00" in k for k in item):
                return True
            pending.extend(item.values())
    return False


def convert_json(value: object) -> str | None:
    """JSON text -> the same text for a jsonb column, after a strict parse (RFC 8259: no NaN, no
    single quotes, no Python reprs). SQL NULL stays NULL; the text ``null`` is a JSON null. A number
    stored by SQLite's JSON affinity (``JSON.stringify(5)``) is the JSON number it was."""
    if value is None:
        return None
    if isinstance(value, bool):  # pragma: no cover - sqlite3 never returns bool
        raise _not_text(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Rejected(f"JSON number {value!r} is not valid JSON", "invalid JSON")
        return repr(value)
    if not isinstance(value, str):
        raise _not_text(value)
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as err:
        if "depth limit" in str(err):
            raise Rejected(
                f"JSON nested deeper than {MAX_JSON_DEPTH} levels: {show(value)}", "JSON nested too deep"
            ) from None
        # orjson refuses some valid JSON (integers beyond 64 bits); the standard library decides.
        try:
            parsed = json.loads(value, parse_constant=_reject_nan)
            json.dumps(parsed, ensure_ascii=False).encode("utf-8")  # lone surrogates: jsonb refuses them
        except RecursionError:
            raise Rejected(
                f"JSON too deeply nested for Python's parser to check: {show(value)}", "JSON nested too deep"
            ) from None
        except (ValueError, UnicodeEncodeError):
            raise Rejected(
                f"invalid JSON ({err.args[0].split(':')[0]}): {show(value)}", "invalid JSON"
            ) from None
    if len(value) > 2 * MAX_JSON_DEPTH and json_depth(parsed) > MAX_JSON_DEPTH:  # shorter text cannot be
        raise Rejected(
            f"JSON nested deeper than {MAX_JSON_DEPTH} levels: {show(value)}", "JSON nested too deep"
        )
    if "\\u0000" in value and _has_nul(parsed):
        raise Rejected(
            f"JSON contains \\u0000, which PostgreSQL jsonb cannot store: {show(value)}", "invalid JSON"
        )
    return value


# --- booleans, integers, text -----------------------------------------------------------------

_BOOLEANS = {0: False, 1: True, "0": False, "1": True, "true": True, "false": False}


def convert_boolean(value: object) -> bool | None:
    """0/1, '0'/'1', 'true'/'false' (any case) -> bool; NULL stays NULL."""
    if value is None:
        return None
    key = value.lower() if isinstance(value, str) else value
    if isinstance(key, int | str) and not isinstance(key, InvalidText):
        result = _BOOLEANS.get(key)
        if result is not None:
            return result
    raise Rejected(f"boolean {show(value)} is not 0/1 or true/false", "invalid boolean")


def convert_integer(value: object) -> int | None:
    """Whole numbers within PostgreSQL's integer range; integral reals and integer text too."""
    if value is None:
        return None
    if isinstance(value, float):
        if not value.is_integer():
            raise Rejected(f"integer column holds the non-integral number {show(value)}", "invalid integer")
        value = int(value)
    elif isinstance(value, str) and not isinstance(value, InvalidText):
        if not _INTEGER_TEXT.fullmatch(value):
            raise Rejected(f"integer column holds the text {show(value)}", "invalid integer")
        value = int(value)
    if not isinstance(value, int):
        raise _not_text(value)
    if not INT4_MIN <= value <= INT4_MAX:
        raise Rejected(f"integer {value} is outside PostgreSQL's integer range", "invalid integer")
    return value


def text_converter(max_length: int | None) -> Converter:
    """Valid UTF-8 without NUL, within the column's length limit (characters, as varchar(n) counts).
    An integer in a TEXT column (SQLite stores what is bound) becomes its decimal text, losslessly."""

    def convert_text(value: object) -> str | None:
        if value is None:
            return None
        if type(value) is int:
            value = str(value)
        elif not isinstance(value, str):
            raise _not_text(value)
        if "\x00" in value:
            raise Rejected(
                f"text contains a NUL character, which PostgreSQL cannot store: {show(value)}", "NUL in text"
            )
        if max_length is not None and len(value) > max_length:
            raise Rejected(
                f"text of {len(value)} characters exceeds the column's limit of {max_length}", "text too long"
            )
        return value

    return convert_text


@cache
def converter_for(kind: str, max_length: int | None = None) -> Converter:
    """The converter for a catalog column kind."""
    if kind == "text":
        return text_converter(max_length)
    return {
        "timestamptz": convert_timestamp,
        "jsonb": convert_json,
        "boolean": convert_boolean,
        "integer": convert_integer,
    }[kind]
