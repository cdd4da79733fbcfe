"""A row's key as text: one rendering, in Python and in SQL, wherever keys are stored or compared.

In:  a table's key values (Python) or key columns (SQL).
Out: :func:`key_text` and :func:`key_sql` render a key alike: each value's text, comma-separated, as
     ``rejected_rows.source_key``, the change log's ``row_key`` and every check comparing keys hold it
     (``str()`` of the integers and texts of ``schema/``'s keys is what ``::text`` gives);
     :func:`source_key` is a source row's key as its load renders it, :func:`rowid_key` the stand-in for
     a row without a usable key.
Fails: never; a key value no key column can hold renders the row's rowid instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from psycopg import sql

from ..catalog import TableSpec
from .convert import Rejected, converter_for

SEPARATOR = ","
ROWID_PREFIX = "rowid:"


def key_text(values: Iterable[object]) -> str:
    """A key's values, as PostgreSQL holds them, as text (the Python twin of :func:`key_sql`)."""
    return SEPARATOR.join(str(v) for v in values)


def key_sql(
    columns: Sequence[str],
    alias: str | None = None,
    value: Callable[[sql.Identifier], sql.Composable] | None = None,
) -> sql.Composable:
    """SQL: the text of a row's key ``columns`` (``alias.column``, or ``value(column)`` for another
    expression of each column), as :func:`key_text` renders it."""
    if value is None:
        value = (lambda c: sql.SQL("{}.{}").format(sql.Identifier(alias), c)) if alias else (lambda c: c)
    return sql.SQL("concat_ws({}, {})").format(
        sql.Literal(SEPARATOR),
        sql.SQL(", ").join(sql.SQL("{}::text").format(value(sql.Identifier(c))) for c in columns),
    )


def rowid_key(rowid: int) -> str:
    """The key of a source row without a usable one: its rowid (``raw_row`` keeps the original)."""
    return f"{ROWID_PREFIX}{rowid}"


def rowid_of(key: str | None) -> int | None:
    """The rowid a :func:`rowid_key` text names, else None (a text key may itself read 'rowid:x')."""
    digits = key[len(ROWID_PREFIX) :] if key and key.startswith(ROWID_PREFIX) else ""
    return int(digits) if digits.isascii() and digits.isdigit() else None


def source_key(spec: TableSpec, columns: tuple[str, ...], row: tuple) -> str:
    """The row's primary key as text, as PostgreSQL holds (or would hold) it; its rowid (``rowid:N``) where
    the key is no usable key: NULL, not among the source columns, or a value no key column can hold (a
    BLOB, invalid UTF-8, text holding NUL, which no PostgreSQL text can hold, text beyond the column's
    length, which rejected_rows' key index could not hold either); ``raw_row`` keeps the original.
    ``row``: ``(rowid, *values of columns)``."""
    parts = []
    for name in spec.primary_key:
        value = row[1 + columns.index(name)] if name in columns else None
        column = spec.column(name)
        try:
            key = None if value is None else converter_for(column.kind, column.max_length)(value)
        except Rejected:
            key = None
        if key is None:
            return rowid_key(row[0])
        parts.append(key)
    return key_text(parts)
