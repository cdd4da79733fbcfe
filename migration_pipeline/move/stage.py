"""Staging: a table's source rows through the value rules and COPY into its temporary staging table.

In:  a source :class:`~migration_pipeline.move.source.Snapshot` (or any batches of ``(rowid, *values)``) and
     the table's :class:`~migration_pipeline.catalog.TableSpec`.
Out: :func:`plan_columns` maps the source's columns onto the schema's; :func:`create_stage` makes the
     temporary stage and rejects tables; :func:`stage_rows` converts every value and COPYs the good rows,
     adding each rejected row to a :class:`Spool` with its reason and original values. The full load,
     the delta sync and the content check all stage through here, so they convert identically.
Fails: :class:`LoadError` for a source that cannot be mapped onto the schema; psycopg errors beyond
     :data:`MAX_REFUSED` refused values propagate.
"""

from __future__ import annotations

import re
import tempfile
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import orjson
import psycopg
from psycopg import sql

from ..catalog import TableSpec
from . import copy_write
from .audit import Rejection, raw_row_json
from .convert import Rejected, show
from .copy_text import Plan
from .keys import source_key
from .source import Columns, Snapshot

ProgressCallback = Callable[[int], None]


class LoadError(RuntimeError):
    """The table cannot be loaded as the schema describes it; nothing was changed."""


@dataclass(frozen=True)
class Staged:
    """What :func:`stage_rows` did: the source ``rows`` it read, and the bytes of the longest COPY line (or
    binary tuple) it sent (a text staged is at most that long, in the connection's encoding:
    index_limits.py)."""

    rows: int
    longest_line: int


_STAGE_TYPES = {"varchar": "text", "serial": "integer", "int4": "integer", "bool": "boolean"}
REJECTS = sql.Identifier("_rejects")  # the rows quarantine.py finds in SQL: _rowid, column, kind, reason


class Spool:
    """Rejected rows, kept on disk beyond a few MB, in the order they were found."""

    def __init__(self, columns: Sequence[str]):
        self.columns = tuple(columns)
        self.kinds: Counter[str] = Counter()
        self._file = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 (closed in __exit__)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def add(self, rejection: Rejection, values: Sequence[object]) -> None:
        self.add_raw(rejection, raw_row_json(self.columns, values))

    def add_raw(self, rejection: Rejection, raw: str) -> None:
        """A rejected row whose values are already ``raw_row_json`` text (a fanned-out range's rejects)."""
        self.kinds[rejection.kind] += 1
        record = (rejection.rowid, rejection.source_key, rejection.column, rejection.reason, rejection.kind)
        self._file.write(orjson.dumps(record) + b"\t" + raw.encode() + b"\n")

    def checkpoint(self) -> tuple[int, Counter[str]]:
        return self._file.tell(), self.kinds.copy()

    def rollback(self, mark: tuple[int, Counter[str]]) -> None:
        """Forget the rows added since ``checkpoint()`` returned ``mark``."""
        self._file.seek(mark[0])
        self._file.truncate()
        self.kinds = mark[1].copy()

    def drain(self) -> Iterator[tuple[Rejection, str]]:
        self._file.seek(0)
        for line in self._file:
            record, raw = line.rstrip(b"\n").split(b"\t", 1)
            yield Rejection(*orjson.loads(record)), raw.decode()


def create_stage(conn: psycopg.Connection, spec: TableSpec, columns: Sequence[str]) -> sql.Identifier:
    """Temporary, unindexed, unconstrained tables for the staged rows and the SQL-side rejects."""
    stage = sql.Identifier(f"_stage_{spec.name}")
    defs = [sql.SQL("_rowid bigint NOT NULL")]
    for name in columns:
        col = spec.column(name)
        defs.append(
            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(_STAGE_TYPES.get(col.pg_type, col.pg_type)))
        )
    conn.execute(sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(stage, sql.SQL(", ").join(defs)))
    create_rejects(conn)
    return stage


def create_rejects(conn: psycopg.Connection) -> None:
    """The temporary table of the rows quarantine finds in SQL (:data:`REJECTS`)."""
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE {} (_rowid bigint, column_name text, kind text, reason text) ON COMMIT DROP"
        ).format(REJECTS)
    )


def drop_stage(conn: psycopg.Connection, stage: sql.Identifier) -> None:
    """Drop the stage and rejects tables before their transaction ends (to stage the next table)."""
    conn.execute(sql.SQL("DROP TABLE {}, {}").format(stage, REJECTS))


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
) -> Staged:
    """Convert every source row (``batches()`` gives batches of ``(rowid, *values)``, e.g.
    ``Snapshot.stream``, or their columns: ``Snapshot.stream_columns``) and COPY the good ones into the
    staging table (see :class:`Staged`). A row whose value PostgreSQL still refuses (a data error naming its COPY line) is quarantined with the server's
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


def plan(spec: TableSpec, columns: Sequence[str]) -> Plan:
    """How a batch of ``columns`` of ``spec``'s table converts (copy_text.py)."""
    return Plan([spec.column(name) for name in columns])


def _copy_rows(conn, batches, spec, columns, stage, spool, progress, refused, written) -> Staged:
    # converted a column at a time as COPY text (copy_text.py), then, where compiled, written as binary
    # tuples (copy_write.py), which the server stores without parsing them
    converting, encoding = plan(spec, columns), conn.info.encoding
    binary = copy_write.available(encoding)
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN{}").format(
        stage,
        sql.SQL(", ").join(map(sql.Identifier, ("_rowid", *columns))),
        sql.SQL(" (FORMAT binary)" if binary else ""),
    )
    skip = {
        rowid: (name, Rejected(f"PostgreSQL refused the value: {message}", "refused by PostgreSQL"))
        for rowid, (name, message) in refused.items()
    }
    source_rows = longest = 0
    with conn.cursor() as cur, cur.copy(copy_sql) as copy:
        if binary:
            copy.write(copy_write.SIGNATURE)
        for batch in batches:
            by_column = batch if isinstance(batch, Columns) else Columns(converting.transposed(batch))
            converted = converting.convert_columns(by_column, skip, encoding, binary)
            if converted.data:
                copy.write(converted.data)
                written.extend(converted.rowids)
                longest = max(longest, converted.longest)
            for i, (name, err, value) in converted.failures.items():
                _spool(spool, spec, columns, by_column.row(i), name, err, value)
            source_rows += len(by_column[0])
            if progress is not None:
                progress(source_rows)
        if binary:
            copy.write(copy_write.TRAILER)
    return Staged(source_rows, longest)


def _spool(
    spool: Spool, spec: TableSpec, columns, row: tuple, name: str | None, err: Exception, value
) -> None:
    """A row that did not convert, with its reason: a value rule's, or a converter's bug (a bug must cost
    one row, never the table)."""
    key = source_key(spec, columns, row)
    if isinstance(err, Rejected):
        spool.add(Rejection(row[0], key, name, err.reason, f"{name}: {err.kind}"), row[1:])
    else:
        reason = f"no rule could convert {show(value)} ({type(err).__name__}: {str(err)[:200]})"
        spool.add(Rejection(row[0], key, name, reason, f"{name}: unexpected error"), row[1:])
