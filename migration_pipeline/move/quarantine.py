"""Set-based quarantine and table replacement, run inside the load's transaction.

In:  a staging table holding the converted rows of one table (``_rowid`` + the source's columns).
Out: :func:`constraint_rejections` moves every staged row that would break a CHECK, a FOREIGN KEY
     (orphan, or parent itself quarantined) or a UNIQUE/PRIMARY KEY constraint out of the stage into a
     rejects table, with a reason; PostgreSQL evaluates the very expressions of ``schema/``.
     :func:`replace_content` makes the target table hold exactly the staged rows. :class:`Spool` collects
     rejected rows with their original values in bounded memory (spilling to a temporary file).
Fails: psycopg errors propagate to the caller, whose transaction then rolls back.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import orjson
import psycopg
from psycopg import sql

from ..catalog import Catalog, TableSpec
from . import index_limits
from .audit import Rejection, raw_row_json
from .source import Snapshot

_STAGE_TYPES = {"varchar": "text", "serial": "integer", "int4": "integer", "bool": "boolean"}
REJECTS = sql.Identifier("_rejects")
# From this many rows on, a table without dependants is loaded with its secondary indexes and foreign
# keys dropped and rebuilt once (cheaper than maintaining them row by row).
BULK_ROWS = 20_000
# the kinds of a foreign-key rejection ("<column>: orphan"): whether it holds depends on the parent table
ORPHAN, PARENT_QUARANTINED = "orphan", "parent quarantined"


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
        self.kinds[rejection.kind] += 1
        record = (rejection.rowid, rejection.source_key, rejection.column, rejection.reason, rejection.kind)
        self._file.write(orjson.dumps(record) + b"\t" + raw_row_json(self.columns, values).encode() + b"\n")

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
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE {} (_rowid bigint, column_name text, kind text, reason text) ON COMMIT DROP"
        ).format(REJECTS)
    )
    return stage


def _show(column: str) -> sql.Composable:
    return sql.SQL("format('%%s=%%s', {}, quote_nullable({}::text))").format(
        sql.Literal(column), sql.Identifier(column)
    )


def _reject_checks(conn, spec: TableSpec, columns: Sequence[str], stage: sql.Identifier) -> None:
    for check in spec.checks:
        if not set(check.columns) <= set(columns):
            continue  # a column left to its default: the target enforces the check on the default
        shown = sql.SQL("concat_ws(', ', {})").format(sql.SQL(", ").join(_show(c) for c in check.columns))
        label = f"CHECK {check.name or ''} ({check.expression})".replace("  ", " ")
        conn.execute(
            sql.SQL(
                "WITH bad AS (DELETE FROM {stage} WHERE ({expr}) IS FALSE RETURNING *) "
                "INSERT INTO {rej} SELECT _rowid, %(col)s, %(kind)s, format('%%s violates %%s', {shown}, %(label)s::text) "
                "FROM bad"
            ).format(stage=stage, expr=sql.SQL(check.expression), rej=REJECTS, shown=shown),
            {"col": check.columns[0], "kind": f"{check.columns[0]}: CHECK violation", "label": label},
        )


def _reject_orphans(conn, catalog: Catalog, spec: TableSpec, columns, stage: sql.Identifier) -> None:
    for fk in spec.foreign_keys:
        if not set(fk.columns) <= set(columns):
            continue
        child = sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in fk.columns)
        parent = sql.SQL(", ").join(sql.SQL("p.{}").format(sql.Identifier(c)) for c in fk.parent_columns)
        not_null = sql.SQL(" AND ").join(
            sql.SQL("s.{} IS NOT NULL").format(sql.Identifier(c)) for c in fk.columns
        )
        keyed = len(fk.columns) == 1 and fk.parent_columns == catalog.table(fk.parent).primary_key
        quarantined = (
            sql.SQL(
                "EXISTS (SELECT 1 FROM migration_audit.rejected_rows r WHERE r.table_name = %(parent)s"
                " AND r.source_key = bad.{c}::text AND r.run_id = (SELECT run_id FROM"
                " migration_audit.table_loads WHERE table_name = %(parent)s ORDER BY finished_at DESC LIMIT 1))"
            ).format(c=sql.Identifier(fk.columns[0]))
            if keyed
            else sql.SQL("false")
        )
        shown = sql.SQL("concat_ws(', ', {})").format(sql.SQL(", ").join(_show(c) for c in fk.columns))
        target = f"{fk.parent}({', '.join(fk.parent_columns)})"
        conn.execute(
            sql.SQL(
                "WITH bad AS (DELETE FROM {stage} s WHERE {not_null} AND NOT EXISTS "
                "(SELECT 1 FROM {parent_table} p WHERE ({parent}) = ({child})) RETURNING s.*) "
                "INSERT INTO {rej} SELECT _rowid, %(col)s, "
                "CASE WHEN {quarantined} THEN %(kind_q)s ELSE %(kind_o)s END, "
                "CASE WHEN {quarantined} THEN format('%%s: its parent row in %%s was itself quarantined', {shown}, %(target)s::text)"
                " ELSE format('%%s: no parent row in %%s (orphan)', {shown}, %(target)s::text) END FROM bad"
            ).format(
                stage=stage,
                not_null=not_null,
                parent_table=sql.Identifier(fk.parent),
                parent=parent,
                child=child,
                rej=REJECTS,
                quarantined=quarantined,
                shown=shown,
            ),
            {
                "col": fk.columns[0],
                "parent": fk.parent,
                "target": target,
                "kind_q": f"{fk.columns[0]}: {PARENT_QUARANTINED}",
                "kind_o": f"{fk.columns[0]}: {ORPHAN}",
            },
        )


def _reject_duplicates(conn, spec: TableSpec, columns, stage: sql.Identifier) -> None:
    """Keep the first source row (lowest rowid) of each key; quarantine the later ones."""
    for key in (spec.primary_key, *spec.unique):
        if not set(key) <= set(columns):
            continue
        cols = sql.SQL(", ").join(map(sql.Identifier, key))
        not_null = sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(sql.Identifier(c)) for c in key)
        shown = sql.SQL("concat_ws(', ', {})").format(sql.SQL(", ").join(_show(c) for c in key))
        conn.execute(
            sql.SQL(
                "WITH ranked AS (SELECT _rowid, first_value(_rowid) OVER w AS keep, row_number() OVER w AS n"
                " FROM {stage} WHERE {not_null} WINDOW w AS (PARTITION BY {cols} ORDER BY _rowid)), "
                "bad AS (DELETE FROM {stage} s USING ranked r WHERE s._rowid = r._rowid AND r.n > 1"
                " RETURNING s.*, r.keep) "
                "INSERT INTO {rej} SELECT _rowid, %(col)s, %(kind)s, format("
                "'duplicate %%s (%%s): the source row with rowid %%s already has it and was loaded', {shown},"
                " %(key)s::text, keep) FROM bad"
            ).format(stage=stage, not_null=not_null, cols=cols, rej=REJECTS, shown=shown),
            {"col": key[0], "kind": f"{key[0]}: duplicate key", "key": "UNIQUE " + ", ".join(key)},
        )


def constraint_rejections(
    conn: psycopg.Connection,
    catalog: Catalog,
    spec: TableSpec,
    columns: Sequence[str],
    stage: sql.Identifier,
    spool: Spool,
    snapshot: Snapshot,
    source_key: Callable[[tuple], str],
) -> None:
    """Quarantine staged rows an index cannot hold or breaking CHECK, FOREIGN KEY or UNIQUE constraints,
    in that order (a row kept for a key is one that loads), and add them to ``spool`` with their
    original values."""
    if columns:
        index_limits.reject_unindexable(conn, spec, columns, stage, REJECTS)  # as if it failed conversion
        _reject_checks(conn, spec, columns, stage)
        _reject_orphans(conn, catalog, spec, columns, stage)
        _reject_duplicates(conn, spec, columns, stage)
    with conn.cursor(name="_rejects_cursor") as cur:
        cur.execute(
            sql.SQL("SELECT _rowid, column_name, kind, reason FROM {} ORDER BY _rowid").format(REJECTS)
        )
        while batch := cur.fetchmany(2_000):
            raw = {row[0]: row for row in snapshot.rows_by_rowid(spec.name, columns, [b[0] for b in batch])}
            for rowid, column, kind, reason in batch:
                row = raw[rowid]
                spool.add(Rejection(rowid, source_key(row), column, reason, kind), row[1:])


def cascade(
    catalog: Catalog, table: str, doomed: sql.Composable, remove: Callable[[TableSpec, sql.Composable], None]
) -> None:
    """Remove the rows of tables referencing the ``table`` rows whose referenced key values ``doomed`` (a
    query) returns, deepest first, so that those ``table`` rows can then be deleted: ``remove(child,
    condition)`` deletes the child rows meeting ``condition``."""
    for child, fk in catalog.children(table):
        selector = sql.SQL("({}) IN (SELECT {} FROM ({}) d)").format(
            sql.SQL(", ").join(map(sql.Identifier, fk.columns)),
            sql.SQL(", ").join(map(sql.Identifier, fk.parent_columns)),
            doomed,
        )
        grandchildren = catalog.children(child.name)
        if grandchildren:
            referenced = dict.fromkeys(c for _, gfk in grandchildren for c in gfk.parent_columns)
            child_doomed = sql.SQL("SELECT {} FROM {} WHERE {}").format(
                sql.SQL(", ").join(map(sql.Identifier, referenced)), sql.Identifier(child.name), selector
            )
            cascade(catalog, child.name, child_doomed, remove)
        remove(child, selector)


def _cascade_delete(
    conn, catalog: Catalog, table: str, doomed: sql.Composable, counts: dict[str, int]
) -> None:
    def remove(child: TableSpec, condition: sql.Composable) -> None:
        deleted = conn.execute(
            sql.SQL("DELETE FROM {} WHERE {}").format(sql.Identifier(child.name), condition)
        )
        if deleted.rowcount:
            counts[child.name] = counts.get(child.name, 0) + deleted.rowcount

    cascade(catalog, table, doomed, remove)


@contextmanager
def _secondary_structures_rebuilt(conn: psycopg.Connection, table: str) -> Iterator[None]:
    """Drop the table's secondary indexes and foreign keys, and recreate them from their exact
    catalog definitions afterwards: one index build and one validating join instead of per-row index
    maintenance and per-row foreign-key triggers. Inside the caller's transaction, so a failure
    restores them untouched; the rows were already checked against the same foreign keys."""
    oid = conn.execute("SELECT %s::regclass::oid", (table,)).fetchone()[0]
    indexes = conn.execute(
        "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index"
        " WHERE indrelid = %s AND NOT indisprimary AND NOT indisunique",
        (oid,),
    ).fetchall()
    foreign_keys = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s AND contype = 'f'",
        (oid,),
    ).fetchall()
    name = sql.Identifier(table)
    for fk_name, _ in foreign_keys:
        conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(name, sql.Identifier(fk_name)))
    for index_name, _ in indexes:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.SQL(index_name)))
    yield
    conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
    for _, definition in indexes:
        conn.execute(sql.SQL(definition))
    for fk_name, definition in foreign_keys:
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                name, sql.Identifier(fk_name), sql.SQL(definition)
            )
        )


def release_unique_values(conn, spec: TableSpec, columns: Sequence[str], stage: sql.Identifier) -> None:
    """Rows about to take each other's UNIQUE values (two users swapping usernames) would collide in a
    single UPDATE, since PostgreSQL checks uniqueness row by row: first give every row whose unique text
    value changes a throwaway value, then the UPDATE sets the real ones. Inside the sync's transaction,
    so no one ever sees the throwaway values."""
    t = sql.Identifier(spec.name)
    on = sql.SQL(" AND ").join(
        sql.SQL("{t}.{c} = s.{c}").format(t=t, c=sql.Identifier(c)) for c in spec.primary_key
    )
    for key in spec.unique:
        if not set(key) <= set(columns) or any(spec.column(c).kind != "text" for c in key):
            continue
        cols = [sql.Identifier(c) for c in key]
        widths = [sql.Literal(spec.column(c).max_length or 64) for c in key]
        conn.execute(
            sql.SQL("UPDATE {t} SET {set} FROM {s} s WHERE {on} AND ({old}) IS DISTINCT FROM ({new})").format(
                t=t,
                s=stage,
                on=on,
                set=sql.SQL(", ").join(
                    sql.SQL("{c} = left('~delta~' || md5(random()::text || {t}.ctid::text), {n})").format(
                        c=c, t=t, n=n
                    )
                    for c, n in zip(cols, widths, strict=True)
                ),
                old=sql.SQL(", ").join(sql.SQL("{}.{}").format(t, c) for c in cols),
                new=sql.SQL(", ").join(sql.SQL("s.{}").format(c) for c in cols),
            )
        )


def replace_content(
    conn: psycopg.Connection, catalog: Catalog, spec: TableSpec, columns: Sequence[str], stage: sql.Identifier
) -> tuple[int, dict[str, int]]:
    """Make ``spec``'s table hold exactly the staged rows; returns (rows loaded, rows deleted from
    referencing tables because their parent row left the source)."""
    table = sql.Identifier(spec.name)
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    cascaded: dict[str, int] = {}
    if not catalog.children(spec.name):
        conn.execute(sql.SQL("TRUNCATE {}").format(table))
        if not columns:
            return 0, cascaded
        insert = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(table, cols, cols, stage)
        staged = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(stage)).fetchone()[0]
        if staged < BULK_ROWS:
            return conn.execute(insert).rowcount, cascaded
        with _secondary_structures_rebuilt(conn, spec.name):
            return conn.execute(insert).rowcount, cascaded
    # Referenced by other tables: TRUNCATE is impossible, so merge. Rows gone from the source go
    # (with the rows that reference them), the rest are inserted or updated in place.
    pk = sql.SQL(", ").join(map(sql.Identifier, spec.primary_key))
    gone = sql.SQL("SELECT {pk} FROM {t} WHERE ({pk}) NOT IN (SELECT {pk} FROM {s})").format(
        pk=pk, t=table, s=stage
    )
    if columns:
        _cascade_delete(conn, catalog, spec.name, gone, cascaded)
        conn.execute(sql.SQL("DELETE FROM {t} WHERE ({pk}) IN ({gone})").format(t=table, pk=pk, gone=gone))
    else:
        _cascade_delete(conn, catalog, spec.name, sql.SQL("SELECT {} FROM {}").format(pk, table), cascaded)
        conn.execute(sql.SQL("DELETE FROM {}").format(table))
        return 0, cascaded
    others = [c for c in columns if c not in spec.primary_key]
    update = sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in others)
    changed = sql.SQL("({}) IS DISTINCT FROM ({})").format(
        sql.SQL(", ").join(sql.SQL("{}.{}").format(table, sql.Identifier(c)) for c in others),
        sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in others),
    )
    action = sql.SQL("DO UPDATE SET {} WHERE {}").format(update, changed) if others else sql.SQL("DO NOTHING")
    release_unique_values(conn, spec, columns, stage)
    conn.execute(
        sql.SQL("INSERT INTO {t} ({cols}) SELECT {cols} FROM {s} ON CONFLICT ({pk}) {action}").format(
            t=table, cols=cols, s=stage, pk=pk, action=action
        )
    )
    staged = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(stage)).fetchone()[0]
    return staged, cascaded
