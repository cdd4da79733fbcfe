"""A batch of source rows through the value rules, column by column, as the fields of a text ``COPY``.

In:  a batch of ``(rowid, *values)`` rows as :class:`~migration_pipeline.move.source.Snapshot` streams them
     (or its columns), and a :class:`Plan` of the columns (the catalog's
     :class:`~migration_pipeline.catalog.Column` of each).
Out: :meth:`Plan.convert` -> :class:`Converted`: the rows every value of which converted, as COPY text
     (``COPY ... FROM STDIN``, text format) or as binary COPY tuples written from that text (copy_write.py
     writes both), their rowids in order, and for each other row the first
     column (in column order) that failed, with its error. The values are exactly what convert.py makes of
     them: every column takes a fast path for the shapes apps write (a whole column of plain text checked
     in one pass, JSON parsed without the re-checks it passes anyway, the usual timestamps and epoch
     numbers read without ``datetime`` by copy_time.py), and anything else goes value by value through
     convert.py. Where setup.py built them (native.py), compiled fast paths (csrc/) answer in their place,
     exactly as these do (test_copy_fast.py, and this module's tests run both ways): a million tweets'
     conversion in 0.9 s of CPU instead of 3.0 s.
Fails: never for a value: a converter's :class:`~migration_pipeline.move.convert.Rejected`, or any other
     exception from it (a bug must cost one row, never the table), is that row's failure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

import orjson

from ..catalog import Column
from . import copy_write, native
from .convert import INT4_MAX, INT4_MIN, MAX_JSON_DEPTH, Rejected, converter_for
from .copy_time import timestamp_texts

NULL = "\\N"
_NONE = type(None)
# what a text COPY field must escape (the COPY's own delimiter, row end and escape character)
_SPECIAL = ("\\", "\t", "\n", "\r")


def escape(text: str) -> str:
    """``text`` as one field of a text COPY."""
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def _any_special(joined: str) -> bool:
    return any(c in joined for c in _SPECIAL)


@dataclass
class Converted:
    """One batch: ``data`` (its COPY lines, encoded) holds the rows of ``rowids``; ``failures`` maps a
    row's index in the batch to ``(column, error, value)`` for the first of its values that did not
    convert; ``longest``: the bytes of the longest line without its newline, or of the longest binary
    tuple (what any of its texts can take)."""

    data: bytes
    rowids: list[int]
    failures: dict[int, tuple[str, Exception, object]] = field(default_factory=dict)
    longest: int = 0


# one column of a batch: its COPY fields (None where the value failed) and the failures by row index
Fields = tuple[list[str | None], dict[int, Exception]]


def _detached(err: Exception) -> Exception:
    """``err`` without its traceback, cause and context: their frames hold the batch (and, kept in a
    local of one of them, make a cycle only the garbage collector frees: a load of 1M app rows held
    500 MB of old batches that way)."""
    err.__traceback__ = err.__context__ = err.__cause__ = None
    return err


def _each(
    convert: Callable[[object], object], render: Callable[[object], str], not_null: bool, values
) -> Fields:
    """The slow path: every value through its convert.py converter."""
    out: list[str | None] = []
    failed: dict[int, Exception] = {}
    for i, value in enumerate(values):
        try:
            converted = convert(value)
            if converted is None:
                if not_null:
                    raise Rejected("NULL in a NOT NULL column", "NULL in NOT NULL column")
                out.append(NULL)
            else:
                out.append(render(converted))
        except Exception as err:  # noqa: BLE001 (Rejected, or a converter's bug: that row's failure)
            failed[i] = _detached(err)
            out.append(None)
    return out, failed


def _strings(values: list, not_null: bool) -> list[str] | None:
    """The column's texts when it holds only text (and NULLs where the column takes them), else None."""
    types = set(map(type, values))
    if types == {str}:
        return values
    if types == {str, _NONE} and not not_null:
        return [v for v in values if v is not None]
    return None


def _scan(texts: list[str]) -> tuple[int, bool, bool]:
    """The longest of ``texts``' lengths, whether one holds NUL, whether one holds what COPY escapes."""
    joined = "\x01".join(texts)
    return max(map(len, texts)), "\x00" in joined, _any_special(joined)


def _as_fields(values: list, special: bool, nulls: bool) -> list[str | None]:
    """Texts kept as they are as COPY fields (``special``: a text holds what COPY escapes; ``nulls``: a
    value is NULL); anything else stays as it is, for :func:`_fill` to replace."""
    if special:
        values = [escape(v) if type(v) is str else v for v in values]
    return [NULL if v is None else v for v in values] if nulls else values


def _missing(out: list) -> list[int]:
    """The indexes of ``out``'s Nones (the values no fast path took)."""
    compiled = native.compiled
    return [i for i, text in enumerate(out) if text is None] if compiled is None else compiled.missing(out)


def _fill(out: list, values: list, slow: list[int], convert, render, not_null: bool) -> Fields:
    """``out`` with the values at the indexes ``slow`` converted one by one (:func:`_each`)."""
    if not slow:
        return out, {}
    out = out if out is not values else list(values)
    others, failed = _each(convert, render, not_null, [values[i] for i in slow])
    for i, text in zip(slow, others, strict=True):
        out[i] = text
    return out, {slow[k]: err for k, err in failed.items()}


def _texts(max_length: int | None, not_null: bool, json: bool):
    """The compiled path of a text or JSON column: each text it vouches for kept as it is, the others (and
    anything not a text) one by one through convert.py."""
    convert = converter_for("jsonb" if json else "text", max_length)
    limit = -1 if max_length is None else max_length

    def fields(values: list) -> Fields:
        slow, special, nulls = native.compiled.texts_slow(values, not not_null, limit, json)
        return _fill(_as_fields(values, special, nulls), values, slow, convert, escape, not_null)

    return fields


def _text(max_length: int | None, not_null: bool) -> Callable[[list], Fields]:
    convert, compiled = converter_for("text", max_length), _texts(max_length, not_null, False)

    def fields(values: list) -> Fields:
        if native.compiled is not None:
            return compiled(values)
        texts = _strings(values, not_null)
        if texts is not None:
            longest, nul, special = _scan(texts)
            if not nul and (max_length is None or longest <= max_length):
                return _as_fields(values, special, len(texts) < len(values)), {}
        return _each(convert, escape, not_null, values)

    return fields


def _json(not_null: bool) -> Callable[[list], Fields]:
    convert, loads, compiled = converter_for("jsonb"), orjson.loads, _texts(None, not_null, True)

    def fields(values: list) -> Fields:
        if native.compiled is not None:
            return compiled(values)
        texts = _strings(values, not_null)
        if texts is not None:
            # convert_json's own checks pass: no \u0000, too short to nest too deep, and orjson reads it
            joined = "\x01".join(texts)
            if max(map(len, texts)) <= 2 * MAX_JSON_DEPTH and "\\u0000" not in joined:
                try:
                    for text in texts:
                        loads(text)
                except orjson.JSONDecodeError:
                    pass
                else:
                    return _as_fields(values, _any_special(joined), len(texts) < len(values)), {}
        return _each(convert, escape, not_null, values)

    return fields


_BOOLEAN_TEXT = {0: "f", 1: "t", "0": "f", "1": "t", "true": "t", "false": "f"}
_INT_OR_STR = (int, str)


def _boolean(not_null: bool) -> Callable[[list], Fields]:
    """0/1 and the texts '0', '1', 'true', 'false' by a lookup; anything else ('TRUE', 2, a NULL where
    none is allowed) one by one through convert.py."""
    convert, get = converter_for("boolean"), _BOOLEAN_TEXT.get

    def fields(values: list) -> Fields:
        types = set(map(type, values))
        if types <= {int, str} or (types <= {int, str, _NONE} and not not_null):
            try:
                return [NULL if v is None else _BOOLEAN_TEXT[v] for v in values], {}
            except KeyError:
                pass
        out = [
            (NULL if v is None and not not_null else None) if type(v) not in _INT_OR_STR else get(v)
            for v in values
        ]
        return _fill(out, values, _missing(out), convert, lambda b: "t" if b else "f", not_null)

    return fields


def _integer(not_null: bool) -> Callable[[list], Fields]:
    convert = converter_for("integer")

    def fields(values: list) -> Fields:
        types = set(map(type, values))
        if types == {int} or (types == {int, _NONE} and not not_null):
            numbers = [v for v in values if v is not None] if _NONE in types else values
            if min(numbers) >= INT4_MIN and max(numbers) <= INT4_MAX:
                return [NULL if v is None else str(v) for v in values], {}
        return _each(convert, str, not_null, values)

    return fields


def _timestamptz(not_null: bool) -> Callable[[list], Fields]:
    convert = converter_for("timestamptz")

    def fields(values: list) -> Fields:
        out = timestamp_texts(values)
        return _fill(out, values, _missing(out), convert, lambda moment: moment.isoformat(), not_null)

    return fields


_KINDS = {"jsonb": _json, "boolean": _boolean, "integer": _integer, "timestamptz": _timestamptz}


class Plan:
    """How to convert the batches of a table's ``columns`` (the catalog's, in the order the rows hold their
    values)."""

    def __init__(self, columns: Sequence[Column]):
        self.names = tuple(c.name for c in columns)
        self.binary_types = copy_write.types_of(columns)
        self._fields = [
            _text(c.max_length, c.not_null) if c.kind == "text" else _KINDS[c.kind](c.not_null)
            for c in columns
        ]

    def convert(
        self,
        batch: Sequence[tuple],
        skip: dict[int, tuple[str, Exception]] | None = None,
        encoding: str = "utf-8",
        binary: bool = False,
    ) -> Converted:
        """``batch``'s rows as COPY text in ``encoding`` (the connection's; see module doc), or with
        ``binary`` (where :func:`~migration_pipeline.move.copy_write.available`) as binary COPY tuples;
        ``skip``: rowid -> (column, error) of rows to fail without converting them."""
        return self.convert_columns(self.transposed(batch), skip, encoding, binary)

    def transposed(self, batch: Sequence[tuple]) -> list[list]:
        """``batch``'s rows as its columns, the rowids first."""
        return _transposed(batch, 1 + len(self.names))

    def convert_columns(
        self,
        by_column: list[list],
        skip: dict[int, tuple[str, Exception]] | None = None,
        encoding: str = "utf-8",
        binary: bool = False,
    ) -> Converted:
        """:meth:`convert` of a batch given as its columns (the rowids first; Snapshot.stream_columns)."""
        rowids = by_column[0]
        columns, failures = [rowids], {}
        for values, name, fields in zip(by_column[1:], self.names, self._fields, strict=True):
            out, failed = fields(values)
            columns.append(out)
            for i, err in failed.items():
                failures.setdefault(i, (name, err, values[i]))
        if skip:
            for i, rowid in enumerate(rowids):
                if rowid in skip:
                    failures[i] = (*skip[rowid], None)
        if binary:
            data, longest = copy_write.tuples(columns, failures, self.binary_types, self.names)
        else:
            data, longest = copy_write.lines(columns, failures, encoding)
        if failures:
            rowids = [rowid for i, rowid in enumerate(rowids) if i not in failures]
        return Converted(data, rowids, dict(sorted(failures.items())), longest)


def _transposed(batch: Sequence[tuple], width: int) -> list[list]:
    """``batch``'s rows (of ``width`` values) as columns."""
    compiled = native.compiled
    if compiled is not None and isinstance(batch, list):
        return compiled.columns(batch, width)
    return [list(map(itemgetter(index), batch)) for index in range(width)]
