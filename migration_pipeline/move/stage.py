"""Staging: a table's source rows through the value rules and COPY into its staging table.

In:  a source :class:`~migration_pipeline.move.source.Snapshot` (or any batches of ``(rowid, *values)``), the
     table's :class:`~migration_pipeline.catalog.TableSpec`, a staging table (quarantine.create_stage) and
     a :class:`~migration_pipeline.move.quarantine.Spool` for the rows that cannot load.
Out: :func:`plan_columns` maps the source's columns onto the schema's; :func:`stage_rows` converts every
     value and COPYs the good rows, spooling each rejected row with its reason and original values;
     :func:`source_key` renders a source row's key as ``rejected_rows.source_key`` holds it. The full load,
     the delta sync and the content check all stage through here, so they convert identically.
Fails: :class:`LoadError` for a source that cannot be mapped onto the schema; psycopg errors beyond
     :data:`MAX_REFUSED` refused values propagate.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Callable, Iterable

import psycopg
from psycopg import sql

from ..catalog import TableSpec
from .audit import Rejection
from .convert import Rejected, converter_for, show
from .quarantine import Spool
from .source import Snapshot

ProgressCallback = Callable[[int], None]


class LoadError(RuntimeError):
    """The table cannot be loaded as the schema describes it; nothing was changed."""


def source_key(spec: TableSpec, columns: tuple[str, ...], row: tuple) -> str:
    """The row's primary key as text, as PostgreSQL holds (or would hold) it; its rowid (``rowid:N``) where
    the key is no usable key: NULL, not among the source columns, or a value no key column can hold (a
    BLOB, invalid UTF-8, text holding NUL, which no PostgreSQL text can hold, text beyond the column's
    length, which rejected_rows' key index could not hold either); ``raw_row`` keeps the original."""
    parts = []
    for name in spec.primary_key:
        value = row[1 + columns.index(name)] if name in columns else None
        column = spec.column(name)
        try:
            key = None if value is None else converter_for(column.kind, column.max_length)(value)
        except Rejected:
            key = None
        if key is None:
            return f"rowid:{row[0]}"
        parts.append(str(key))
    return ",".join(parts)


def plan_columns(snapshot: Snapshot, spec: TableSpec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(columns read from the source, target columns left to their defaults); LoadError when the source
    has columns the schema lacks or lacks a NOT NULL column without default."""
    present = snapshot.columns(spec.name)
    extra = [c for c in present if c not in spec.column_names]
    if extra:
        raise LoadError(
            f"source table {spec.name} has columns the schema does not: {', '.join(extra)}; their data "
            f"would be lost. Add them to schema/ or drop them from the source before migrating."
        )
    missing = [c for c in spec.columns if c.name not in present]
    required = [c.name for c in missing if c.not_null and not c.has_default]
    if required:
        raise LoadError(f"source table {spec.name} lacks required (NOT NULL) columns: {', '.join(required)}")
    return tuple(c for c in spec.column_names if c in present), tuple(c.name for c in missing)


# A value PostgreSQL refuses that no rule here foresaw costs its row: the COPY is redone without it, up to
# this many times per table (each time a pass over the table), then the load fails with the server's error.
MAX_REFUSED = 10
_COPY_LINE = re.compile(r"COPY [^,]+, line (\d+)(?:, column ([^:]+))?")


def stage_rows(
    conn: psycopg.Connection,
    batches: Callable[[], Iterable[list[tuple]]],
    spec: TableSpec,
    columns: tuple[str, ...],
    stage: sql.Identifier,
    spool: Spool,
    progress: ProgressCallback | None,
) -> int:
    """Convert every source row (``batches()`` gives batches of ``(rowid, *values)``, e.g.
    ``Snapshot.stream``) and COPY the good ones into the staging table; returns source rows. A row whose
    value PostgreSQL still refuses (a data error naming its COPY line) is quarantined with the server's
    reason and the COPY redone from a savepoint without it (see :data:`MAX_REFUSED`)."""
    refused: dict[int, tuple[str | None, str]] = {}
    while True:
        mark, written = spool.checkpoint(), array("q")
        try:
            with conn.transaction():  # a savepoint: a refused COPY leaves the caller's transaction usable
                return _copy_rows(conn, batches(), spec, columns, stage, spool, progress, refused, written)
        except (
            psycopg.DataError,
            psycopg.errors.ProgramLimitExceeded,
            psycopg.errors.StatementTooComplex,
        ) as err:
            found = _COPY_LINE.search(err.diag.context or "")
            if found is None or len(refused) >= MAX_REFUSED:
                raise
            refused[written[int(found[1]) - 1]] = (found[2], err.diag.message_primary or str(err))
            spool.rollback(mark)


def _copy_rows(conn, batches, spec, columns, stage, spool, progress, refused, written) -> int:
    converters = [converter_for(spec.column(c).kind, spec.column(c).max_length) for c in columns]
    not_null = [spec.column(c).not_null for c in columns]
    targets = list(zip(columns, converters, not_null, strict=True))
    source_rows = 0
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
        stage, sql.SQL(", ").join(map(sql.Identifier, ("_rowid", *columns)))
    )
    with conn.cursor() as cur, cur.copy(copy_sql) as copy:
        for batch in batches:
            for row in batch:
                out = [row[0]]
                try:
                    if row[0] in refused:
                        name, message = refused[row[0]]
                        raise Rejected(f"PostgreSQL refused the value: {message}", "refused by PostgreSQL")
                    for (name, convert, required), value in zip(targets, row[1:], strict=True):  # noqa: B007
                        converted = convert(value)
                        if converted is None and required:
                            raise Rejected("NULL in a NOT NULL column", "NULL in NOT NULL column")
                        out.append(converted)
                except Rejected as err:
                    key = source_key(spec, columns, row)
                    spool.add(Rejection(row[0], key, name, err.reason, f"{name}: {err.kind}"), row[1:])
                except Exception as err:  # a converter's bug must cost one row, never the table
                    key = source_key(spec, columns, row)
                    reason = f"no rule could convert {show(value)} ({type(err).__name__}: {str(err)[:200]})"
                    spool.add(Rejection(row[0], key, name, reason, f"{name}: unexpected error"), row[1:])
                else:
                    copy.write_row(out)
                    written.append(row[0])
            source_rows += len(batch)
            if progress is not None:
                progress(source_rows)
    return source_rows
