"""Publishing a table: make it hold exactly the staged rows, inside the load's transaction.

In:  a staging table of one table's rows that passed quarantine (stage.py, quarantine.py).
Out: :func:`replace_content` replaces the table's content: ``TRUNCATE`` + insert for a table nothing
     references (a large one with its secondary indexes and foreign keys dropped and rebuilt once), a
     merge for a referenced one, removing the referencing rows of keys that left (:func:`cascade`).
     :func:`cascade` and :func:`release_unique_values` are shared with the delta sync, which applies a
     stage of changed rows the same way.
Fails: psycopg errors propagate to the caller, whose transaction then rolls back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import psycopg
from psycopg import sql

from ..catalog import Catalog, TableSpec
from . import shadow

# From this many rows on, a table without dependants is loaded with its secondary indexes and foreign
# keys dropped and rebuilt once (cheaper than maintaining them row by row).
BULK_ROWS = 20_000


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
    shadow.enough_memory(conn)
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
