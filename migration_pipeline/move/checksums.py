"""The content checksum of a table's rows: order-independent, and the same wherever it is taken.

In:  a relation (the load's staging table, holding the converted source rows that were loaded, or the
     target table) and the columns to cover.
Out: :func:`checksum` -> ``rowmd5-v1;rows=N;sum=S;columns=a,b`` (the sum of the first 64 bits of the
     md5 of each row's text, so row order does not matter and a duplicated row does not cancel out);
     the load records it over its staging table, the delta carries it forward, the checks compare it with
     :func:`table_checksum` of the stored rows; :func:`row_hash` is a row's part of it (also logged by the
     change log). :data:`FIXED_RENDERING` are the session settings that make a row's text, hence its hash,
     the same in every session.
Fails: psycopg errors propagate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

VERSION = "rowmd5-v1"
ALL_ROWS = sql.SQL("true")


@dataclass(frozen=True)
class Checksum:
    rows: int
    total: int
    columns: tuple[str, ...]

    def __str__(self) -> str:
        return f"{VERSION};rows={self.rows};sum={self.total};columns={','.join(self.columns)}"

    @classmethod
    def parse(cls, text: str) -> Checksum:
        parts = dict(p.split("=", 1) for p in text.split(";")[1:])
        if not text.startswith(VERSION + ";"):
            raise ValueError(f"unknown checksum format {text[:40]!r}")
        return cls(int(parts["rows"]), int(parts["sum"]), tuple(c for c in parts["columns"].split(",") if c))


# The settings under which a row's text, hence its hash, is the same in every session: every place that
# renders rows for a hash (a transaction's SET LOCAL, the change-log function's SET clauses) uses these.
FIXED_RENDERING = (("TimeZone", "UTC"), ("DateStyle", "ISO, YMD"), ("IntervalStyle", "postgres"))


def fixed_rendering(conn: psycopg.Connection) -> None:
    """Render rows under :data:`FIXED_RENDERING` for this transaction (hashes reproducible)."""
    for name, value in FIXED_RENDERING:
        conn.execute(sql.SQL("SET LOCAL {} = {}").format(sql.SQL(name), sql.Literal(value)))


def fixed_rendering_clauses() -> sql.Composable:
    """:data:`FIXED_RENDERING` as the SET clauses of a function (``CREATE FUNCTION ... SET ...``)."""
    return sql.SQL(" ").join(
        sql.SQL("SET {} = {}").format(sql.SQL(name), sql.Literal(value)) for name, value in FIXED_RENDERING
    )


def row_hash(columns: Sequence[str], alias: str) -> sql.Composable:
    """The 64-bit hash of a row's text over ``columns`` (the unit of :class:`Checksum`; rendered under
    :data:`FIXED_RENDERING` by its callers). Zero when no column is covered."""
    if not columns:
        return sql.SQL("0")
    cols = sql.SQL(", ").join(
        sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(c)) for c in columns
    )
    return sql.SQL("('x' || left(md5(ROW({})::text), 16))::bit(64)::bigint").format(cols)


def checksum(
    conn: psycopg.Connection,
    relation: sql.Composable,
    columns: Sequence[str],
    where: sql.Composable = ALL_ROWS,
) -> Checksum:
    """The checksum of ``relation``'s rows meeting ``where`` (on alias ``t``) over ``columns`` (call
    inside a transaction)."""
    fixed_rendering(conn)
    if not columns:
        counted = sql.SQL("SELECT count(*) FROM {} t WHERE {}").format(relation, where)
        rows = conn.execute(counted).fetchone()[0]
        return Checksum(rows, 0, ())
    rows, total = conn.execute(
        sql.SQL("SELECT count(*), coalesce(sum({}), 0) FROM {} t WHERE {}").format(
            row_hash(columns, "t"), relation, where
        )
    ).fetchone()
    return Checksum(rows, int(total), tuple(columns))


def table_checksum(conn: psycopg.Connection, table: str, columns: Sequence[str]) -> Checksum:
    with conn.transaction():
        return checksum(conn, sql.Identifier(table), columns)
