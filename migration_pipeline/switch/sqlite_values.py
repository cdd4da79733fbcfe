"""Pure value rules back: one PostgreSQL value in, the SQLite value the app itself writes out.

The mirror of move/convert.py's converters, for the rollback export (rollback.py); no I/O.
In:  a value as PostgreSQL hands it over when read with :func:`read_as` (TimeZone UTC, DateStyle ISO):
     booleans as the integers 1/0, jsonb and timestamptz as PostgreSQL's text, integers and text as
     psycopg returns them. NULL stays None and never reaches a rule.
Out: :func:`writer_for` (kind, habit) -> the rule for a column kind, or None where the value is already
     the app's: jsonb as compact JSON text (JSON.stringify's form, :func:`compact_json`), timestamptz in
     the column's habit (:func:`format_timestamp`; ``SQLITE_HABIT`` is CURRENT_TIMESTAMP's
     'YYYY-MM-DD HH:MM:SS', ``ISO_HABIT`` toISOString()'s '...T...Z', :func:`habit_of` tells which a
     column's values follow). convert.py reads every such value back to the same PostgreSQL value.
Fails: never; a timestamp no app form holds (infinity, BC, years past 9999) gives None, for the caller to
     keep PostgreSQL's text and count it as inexact. A top-level JSON number may change in a column SQLite
     gives NUMERIC affinity (:func:`is_top_level_number`); that is asked of SQLite by the export.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import partial

SQLITE_HABIT, ISO_HABIT = "sqlite", "iso"  # CURRENT_TIMESTAMP's form, toISOString()'s form
_PG_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?\+00")  # TimeZone UTC, ISO
_ISO_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
_PLAIN = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?")
_JSON_TOKEN = re.compile(r'("(?:[^"\\]|\\.)*")|\s+')
_READ_AS = {"boolean": "{}::int", "jsonb": "{}::text", "timestamptz": "{}::text"}


def read_as(kind: str) -> str:
    """The SQL a column of ``kind`` is read with (``{}`` stands for the column): what the rules take in."""
    return _READ_AS.get(kind, "{}")


def compact_json(text: str) -> str:
    """jsonb's own text without the blanks it puts after ',' and ':' (JSON.stringify's form). Numbers,
    strings and escapes stay exactly as jsonb wrote them, so the text parses back to the same jsonb."""
    if "\\" not in text:  # no escaped quote: quotes alternate string / structure
        parts = text.split('"')
        parts[::2] = [p.replace(" ", "") for p in parts[::2]]
        return '"'.join(parts)
    return _JSON_TOKEN.sub(lambda m: m.group(1) or "", text)


def is_top_level_number(json_text: str) -> bool:
    """Whether a compact JSON text is a bare number (which a column declared JSON may store as another)."""
    return json_text[0] in "-0123456789"


def format_timestamp(text: str, habit: str = SQLITE_HABIT) -> str | None:
    """A timestamptz as PostgreSQL renders it (TimeZone UTC, DateStyle ISO) in the app's form:
    'YYYY-MM-DD HH:MM:SS' or 'YYYY-MM-DDTHH:MM:SS.mmmZ'. A value with sub-second digits always gets the
    ISO form (milliseconds, or microseconds when it has them), which convert_timestamp reads back to the
    same instant. None for a value no app form holds (infinity, BC, years past 9999)."""
    match = _PG_TIMESTAMP.fullmatch(text)
    if match is None:
        return None
    date, clock, frac = match.groups()
    if frac is None and habit == SQLITE_HABIT:
        return f"{date} {clock}"
    frac = frac or ""
    return f"{date}T{clock}.{frac.ljust(3 if len(frac) <= 3 else 6, '0')}Z"


def habit_of(values: Iterable[str]) -> str:
    """The habit most of a timestamp column's text values follow (CURRENT_TIMESTAMP's on a tie)."""
    values = list(values)
    iso = sum(1 for v in values if _ISO_Z.fullmatch(v))
    plain = sum(1 for v in values if _PLAIN.fullmatch(v))
    return ISO_HABIT if iso > plain else SQLITE_HABIT


def writer_for(kind: str, habit: str = SQLITE_HABIT) -> Callable[[str], str | None] | None:
    """The rule for a column kind (a timestamptz column's in its ``habit``), or None where the value as
    read (:func:`read_as`) is already what the app writes: booleans 1/0, integers, text."""
    if kind == "timestamptz":
        return partial(format_timestamp, habit=habit)
    if kind == "jsonb":
        return compact_json
    return None
