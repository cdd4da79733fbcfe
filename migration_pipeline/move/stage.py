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

import orjson
import psycopg
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format

from ..catalog import TableSpec
from .audit import Rejection, raw_row_json
from .convert import Rejected, converter_for, show
from .keys import source_key
from .source import Snapshot

ProgressCallback = Callable[[int], None]
JSONB_OID = 3802


class LoadError(RuntimeError):
    """The table cannot be loaded as the schema describes it; nothing was changed."""


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


class _JsonText(Dumper):
    """A converted JSON value (its text, checked by convert.py) as jsonb's binary COPY form: version 1,
    then the text, which PostgreSQL parses as it parses jsonb's text input."""

    format = Format.BINARY
    oid = JSONB_OID

    def dump(self, obj: str) -> bytes:
        return b"\x01" + obj.encode()


# the COPY's binary types of a column (as catalog.Column.pg_type names it): varchar is sent as text (the
# same bytes; the column still checks its length), a serial as its integer
_COPY_TYPES = {"varchar": "text", "serial": "int4"}


def _copy_rows(conn, batches, spec, columns, stage, spool, progress, refused, written) -> int:
    converters = [converter_for(spec.column(c).kind, spec.column(c).max_length) for c in columns]
    not_null = [spec.column(c).not_null for c in columns]
    targets = list(zip(columns, converters, not_null, strict=True))
    # binary: no text to escape on this side nor to parse on the server's (measured: 2.5x faster)
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        stage, sql.SQL(", ").join(map(sql.Identifier, ("_rowid", *columns)))
    )
    types = ["int8"] + [_COPY_TYPES.get(spec.column(c).pg_type, spec.column(c).pg_type) for c in columns]
    with conn.cursor() as cur:
        cur.adapters.register_dumper(None, _JsonText)  # by oid only: for the jsonb columns of the COPY
        with cur.copy(copy_sql) as copy:
            copy.set_types(types)
            return _write(copy, batches, spec, columns, targets, spool, progress, refused, written)


def _write(copy, batches, spec, columns, targets, spool, progress, refused, written) -> int:
    """Convert each row, COPY the good ones and spool the rejected ones; returns source rows."""
    source_rows = 0
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
