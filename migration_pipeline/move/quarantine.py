"""Constraint quarantine: staged rows that would break a constraint of ``schema/`` leave the stage.

In:  a staging table holding the converted rows of one table (``_rowid`` + the source's columns, stage.py)
     and the table's rejects table (``stage.REJECTS``), inside the load's (or sync's) transaction.
Out: :func:`constraint_rejections` moves every staged row that an index cannot hold or that would break a
     CHECK, a FOREIGN KEY (orphan, or parent itself quarantined) or a UNIQUE/PRIMARY KEY constraint out
     of the stage into the rejects table, with a reason (PostgreSQL evaluates the very expressions of
     ``schema/``), then adds them to the spool with their original values.
Fails: psycopg errors propagate to the caller, whose transaction then rolls back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import psycopg
from psycopg import sql

from ..catalog import Catalog, TableSpec
from . import audit, index_limits, keys
from .audit import Rejection
from .source import Snapshot
from .stage import REJECTS, Spool

# the kinds of a foreign-key rejection ("<column>: orphan"): whether it holds depends on the parent table
ORPHAN, PARENT_QUARANTINED = "orphan", "parent quarantined"


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
        quarantined = (  # the parent key it references is one the parent's latest load quarantined
            sql.SQL("EXISTS (SELECT 1 FROM ({}) r WHERE r.source_key = {})").format(
                audit.quarantined_keys_sql(fk.parent), keys.key_sql(fk.columns, "bad")
            )
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


class Builds(Protocol):
    """A stage that becomes the table (move/shadow.py): its constraints can be added as quarantine goes."""

    def restage(self) -> sql.Identifier: ...  # after rows no index can hold left it: the stage to go on with
    def add(self, kind: str) -> None: ...  # add the constraints of kind 'checks', 'foreign keys' or 'keys'


_VIOLATIONS = (
    psycopg.errors.CheckViolation,
    psycopg.errors.ForeignKeyViolation,
    psycopg.errors.UniqueViolation,
)


def constraint_rejections(
    conn: psycopg.Connection,
    catalog: Catalog,
    spec: TableSpec,
    columns: Sequence[str],
    stage: sql.Identifier,
    spool: Spool,
    snapshot: Snapshot,
    builds: Builds | None = None,
    longest_line: int | None = None,
) -> sql.Identifier:
    """Quarantine staged rows an index cannot hold or breaking CHECK, FOREIGN KEY or UNIQUE constraints,
    in that order (a row kept for a key is one that loads), and add them to ``spool`` with their
    original values (``snapshot``: what the rows were staged from, read again by rowid). With ``builds``,
    each kind of constraint is first added to the stage as it is: PostgreSQL validates it with the
    scan or join the quarantine query would make, so a source without such rows (the usual case) pays
    once; only when it fails are the rows quarantined and the constraint added again. ``longest_line``:
    the bytes of the longest COPY line staged, where known (it may spare index_limits.py its scan).
    Returns the stage (another one if ``builds`` had to restage)."""
    if columns:
        moved = index_limits.reject_unindexable(conn, spec, columns, stage, REJECTS, longest_line)
        if moved and builds is not None:
            stage = builds.restage()
        steps = (
            ("checks", lambda: _reject_checks(conn, spec, columns, stage)),
            ("foreign keys", lambda: _reject_orphans(conn, catalog, spec, columns, stage)),
            ("keys", lambda: _reject_duplicates(conn, spec, columns, stage)),
        )
        for kind, reject in steps:
            if builds is None:
                reject()
                continue
            try:
                with conn.transaction():  # a savepoint: a failed validation costs only the attempt
                    builds.add(kind)
            except _VIOLATIONS:
                reject()
                builds.add(kind)
    with conn.cursor(name="_rejects_cursor") as cur:
        cur.execute(
            sql.SQL("SELECT _rowid, column_name, kind, reason FROM {} ORDER BY _rowid").format(REJECTS)
        )
        while batch := cur.fetchmany(2_000):
            raw = {row[0]: row for row in snapshot.rows_by_rowid(spec.name, columns, [b[0] for b in batch])}
            for rowid, column, kind, reason in batch:
                row = raw[rowid]
                spool.add(
                    Rejection(rowid, keys.source_key(spec, columns, row), column, reason, kind), row[1:]
                )
    return stage
