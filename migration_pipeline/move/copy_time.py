"""The COPY text of timestamps in the shapes apps write, a whole column at a time, without ``datetime``.

In:  a column of a batch (values as SQLite returns them) for a ``timestamptz`` column.
Out: :func:`timestamp_texts`: each value's COPY text where a fast path is sure what convert.py makes of it,
     None where only convert.py can say (another shape, an offset, a date that does not exist, a value
     outside 1970-9999 or not a number or text). The fast paths: UTC in SQLite's ``YYYY-MM-DD HH:MM:SS``
     and ISO 8601's ``...T...(.fff)Z`` (a column of them checked by one regex over the joined column),
     Twitter's ``Sat Feb 17 05:51:53 +0000 2024`` (its weekday checked), and integer epochs in seconds or
     milliseconds. The text is ISO 8601 with its UTC offset: the same moment under any ``DateStyle`` and
     ``TimeZone``. csrc/time.c answers the same in their place where it built (native.py).
Fails: never.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date
from itertools import compress, repeat
from operator import is_, itemgetter, not_

from . import native
from .convert import EPOCH_MS_THRESHOLD

_UTC_SHAPES = re.compile(
    r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])(?: |T)(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{3}Z|Z)?",
    re.ASCII,
)
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {name: f"{number:02d}" for number, name in enumerate(_MONTH_NAMES, 1)}
_TWITTER_UTC = re.compile(
    rf"({'|'.join(_WEEKDAYS)}) ({'|'.join(_MONTH_NAMES)}) (0[1-9]|[12]\d|3[01]) "
    r"((?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d) \+0000 (\d{4})",
    re.ASCII,
)
_DATES: dict[str, str | None] = {}  # 'YYYY-MM-DD' -> its weekday, None for no such date (year 0, Feb 30)
_DATES_KEPT = 100_000


def _weekday(day: str) -> str | None:
    try:
        return _DATES[day]
    except KeyError:
        pass
    if len(_DATES) >= _DATES_KEPT:
        _DATES.clear()
    try:
        found = _WEEKDAYS[date.fromisoformat(day).weekday()]
    except ValueError:
        found = None
    _DATES[day] = found
    return found


def _timestamp_text(value: object) -> str | None:
    """The COPY text of a UTC timestamp in a usual shape, None for any other value."""
    if type(value) is not str:
        return None
    if _UTC_SHAPES.fullmatch(value):
        if _weekday(value[:10]) is None:
            return None
        return value if value[-1] == "Z" else value + "+00"
    match = _TWITTER_UTC.fullmatch(value)
    if match:
        day = f"{match[5]}-{_MONTHS[match[2]]}-{match[3]}"
        if _weekday(day) == match[1]:
            return f"{day} {match[4]}+00"
    return None


# a whole column of UTC shapes, each value followed by \x01 (which no value holds: counted first)
_UTC_COLUMN = re.compile(rf"(?:(?:{_UTC_SHAPES.pattern})\x01)*", re.ASCII)


def _utc_column(values: list) -> list[str] | None:
    """The COPY texts of a column of UTC timestamps in the usual shapes, checked in one pass; None for a
    column holding anything else."""
    if set(map(type, values)) != {str}:
        return None
    joined = "\x01".join(values) + "\x01"
    if joined.count("\x01") != len(values) or not _UTC_COLUMN.fullmatch(joined):
        return None
    if not all(_weekday(day) for day in {v[:10] for v in values}):
        return None
    if "Z" not in joined:
        return [v + "+00" for v in values]
    return [v if v[-1] == "Z" else v + "+00" for v in values]


# epoch numbers: whole seconds, or milliseconds from EPOCH_MS_THRESHOLD on, from 1970 to the end of 9999
_LAST_SECOND = 253_402_300_799  # 9999-12-31 23:59:59
_DAYS: dict[int, str] = {}  # days since 1970-01-01 -> 'YYYY-MM-DD'
_UNIX_DAY_ONE = date(1970, 1, 1).toordinal()


def _epoch_text(value: object) -> str | None:
    """The COPY text of an integer epoch in seconds or milliseconds from 1970 to 9999 (convert.py's
    reading of it), None for any other value."""
    if type(value) is not int or value < 0:
        return None
    if value >= EPOCH_MS_THRESHOLD:
        if value > _LAST_SECOND * 1000 + 999:
            return None
        seconds, millis = divmod(value, 1000)
        fraction = f".{millis:03d}" if millis else ""
    else:  # seconds: EPOCH_MS_THRESHOLD is below _LAST_SECOND
        seconds, fraction = value, ""
    days, second = divmod(seconds, 86_400)
    day = _DAYS.get(days)
    if day is None:
        if len(_DAYS) >= _DATES_KEPT:
            _DAYS.clear()
        day = _DAYS[days] = date.fromordinal(_UNIX_DAY_ONE + days).isoformat()
    minutes, second = divmod(second, 60)
    return f"{day} {minutes // 60:02d}:{minutes % 60:02d}:{second:02d}{fraction}+00"


def _indices(flags: Iterable[object], of: Sequence[int]) -> list[int]:
    return list(compress(of, flags))


def _mixed_column(values: list) -> list[str | None]:
    """The COPY texts of a column mixing epoch numbers, ISO 8601 or SQLite texts and Twitter's dates (apps
    change how they write a date): each kind in a pass of its own, the ISO-shaped texts checked in one;
    None where no fast path applies."""
    out: list[str | None] = [None] * len(values)
    types, everywhere = list(map(type, values)), range(len(values))
    for i in _indices(map(is_, types, repeat(int)), everywhere):
        out[i] = _epoch_text(values[i])
    texts = _indices(map(is_, types, repeat(str)), everywhere)
    numeric = list(map(str.isdigit, map(itemgetter(slice(0, 1)), map(values.__getitem__, texts))))
    for group in (_indices(numeric, texts), _indices(map(not_, numeric), texts)):
        strings = list(map(values.__getitem__, group))
        for i, text in zip(group, _utc_column(strings) or map(_timestamp_text, strings), strict=True):
            out[i] = text
    return out


def timestamp_texts(values: list) -> list[str | None]:
    """The COPY text of each value of a timestamp column, None where convert.py must decide (see module doc);
    compiled where it built (native.py)."""
    compiled = native.compiled
    if compiled is not None:
        return compiled.timestamp_texts(values)
    return _utc_column(values) or _mixed_column(values)
