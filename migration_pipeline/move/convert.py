"""Pure value converters: one SQLite value in, the exact PostgreSQL value out, or :class:`Rejected`.

In:  a value as Python's sqlite3 returns it (None, int, float, str, bytes for BLOBs, or
     :class:`InvalidText` for TEXT that is not valid UTF-8, see :func:`decode_text`).
Out: a value psycopg writes into a COPY stream for the target type: ``datetime`` (aware) for
     timestamptz, the original JSON text for jsonb, ``bool``, ``int``, ``str``. NULL stays None.
Fails: :class:`Rejected` with a reason a person understands. Nothing is guessed, nothing is turned into
     NULL, no precision is dropped: a value these rules do not cover is rejected (contract, "Value rules").
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache

import orjson

from . import json_rules

Converter = Callable[[object], object]

INT4_MIN, INT4_MAX = -(2**31), 2**31 - 1
# Epoch values at or above this magnitude are milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973.
EPOCH_MS_THRESHOLD = 100_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# re.ASCII: digits are 0-9 only, not every script's (int("٣") would be 3)
_ISO = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}"
    r"(?P<frac>\.\d+)?"
    r"(?P<tz>Z|[+-]\d{2}:?\d{2})?",
    re.ASCII,
)
_TWITTER = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} \d{2} \d{2}:\d{2}:\d{2} [+-]\d{4} \d{4}", re.ASCII
)
# an integer's text: more than 10 significant digits are out of range anyway (and int() of over 4,300 raises)
_INTEGER_TEXT = re.compile(r"(?P<sign>[+-]?)0*(?P<digits>\d{1,10})", re.ASCII)
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


def _in_utc(parsed: datetime, text: str) -> datetime:
    """The moment in UTC: PostgreSQL takes UTC offsets up to 15:59 only, and a moment outside years
    1-9999 in UTC could be stored but never read back by Python (the checks, psycopg)."""
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise Rejected(
            f"timestamp {show(text)} is outside years 1-9999 in UTC", "invalid timestamp"
        ) from None


def _canonical(text: str) -> bool:
    """Whether ``text`` is 'YYYY-MM-DD HH:MM:SS' (SQLite's CURRENT_TIMESTAMP, most of an app's values)."""
    return (
        len(text) == 19
        and text[4] == text[7] == "-"
        and text[10] == " "
        and text[13] == text[16] == ":"
        and text.isascii()
        and (text[:4] + text[5:7] + text[8:10] + text[11:13] + text[14:16] + text[17:]).isdigit()
    )


def _from_text(text: str) -> datetime:
    if _canonical(text):  # the fast path: the same result as below, a sixth of the time
        try:
            return datetime.fromisoformat(text + "+00:00")
        except ValueError:
            pass  # not a valid date or time: the general path says why
    return _from_any_text(text)


def _from_any_text(text: str) -> datetime:
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
        return _in_utc(parsed, text) if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    if _TWITTER.fullmatch(text):
        try:
            parsed = datetime.strptime(text, "%a %b %d %H:%M:%S %z %Y")
        except ValueError:
            raise Rejected(
                f"timestamp {show(text)} is not a valid date or time", "invalid timestamp"
            ) from None
        if parsed.strftime("%a") != text[:3]:
            raise Rejected(f"timestamp {show(text)}: weekday does not match the date", "invalid timestamp")
        return _in_utc(parsed, text)
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


# Deepest JSON nesting loaded (json_rules.py says why)
MAX_JSON_DEPTH = json_rules.MAX_DEPTH
# How the checks parse JSON to compare it: numbers as exact decimals (json_rules.parse_exact)
json_exact = json_rules.parse_exact


def _invalid_json(detail: str, value: str) -> Rejected:
    return Rejected(f"invalid JSON ({detail}): {show(value)}", "invalid JSON")


def _lone_surrogate(parsed: object) -> bool:
    for text in json_rules.walk_strings(parsed):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return True
    return False


def convert_json(value: object) -> str | None:
    """JSON text -> the same text for a jsonb column, after a strict parse (RFC 8259: no NaN, no
    single quotes, no Python reprs). SQL NULL stays NULL; the text ``null`` is a JSON null. A number
    stored by SQLite's JSON affinity (``JSON.stringify(5)``) is the JSON number it was. Beyond the RFC,
    what jsonb cannot store or the checks cannot read back is refused (json_rules.py): ``\\u0000``, lone
    surrogates, nesting deeper than json_rules.MAX_DEPTH, numbers outside numeric's range."""
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
    depth = json_rules.too_deep(value)
    if depth is not None:
        raise Rejected(
            f"JSON nested deeper than {MAX_JSON_DEPTH} levels ({depth} levels deep): {show(value)}",
            "JSON nested too deep",
        )
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as err:
        # orjson refuses some valid JSON (numbers beyond 64-bit doubles); the exact parser decides, and
        # the numbers must then fit numeric. (Numbers orjson reads are finite doubles, which numeric
        # holds, but for the odd 0e-99999: PostgreSQL refuses those rows itself, see load.stage_rows.)
        detail = err.args[0].split(":")[0]
        try:
            parsed = json_rules.parse_exact(value)
        except (ValueError, RecursionError):
            raise _invalid_json(detail, value) from None
        if _lone_surrogate(parsed):  # jsonb refuses them (orjson does too)
            raise _invalid_json(detail, value) from None
        if (problem := json_rules.number_problem(value)) is not None:
            raise Rejected(f"{problem}: {show(value)}", "JSON number out of range") from None
    if "\\u0000" in value and any("\x00" in text for text in json_rules.walk_strings(parsed)):
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
        match = _INTEGER_TEXT.fullmatch(value)
        if match is None:
            if re.fullmatch(r"[+-]?[0-9]+", value):
                raise Rejected(
                    f"integer {show(value)} is outside PostgreSQL's integer range", "invalid integer"
                )
            raise Rejected(f"integer column holds the text {show(value)}", "invalid integer")
        value = int(match["sign"] + match["digits"])
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
