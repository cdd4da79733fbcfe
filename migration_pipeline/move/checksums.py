"""The content checksum of a table's rows: order-independent, and the same wherever it is taken.

In:  a relation (the load's staging table, holding the converted source rows that were loaded, or the
     target table) and the columns to cover.
Out: :func:`checksum` -> ``rowmd5-v2;rows=N;sum=S;columns=a,b`` (the sum of the first 64 bits of the
     md5 of each row's text, so row order does not matter and a duplicated row does not cancel out);
     the load records it over its staging table, the delta carries it forward, the checks compare it with
     :func:`table_checksum` of the stored rows; :func:`row_hash` is a row's part of it (also logged by the
     change log's triggers, on every write of the app). A row's text is the same in every session: a
     timestamptz is rendered as its epoch, the only column type whose text depends on session settings,
     so no setting has to be fixed (a trigger function with SET clauses costs the app's every write).
     ``rowmd5-v1`` checksums, recorded by earlier versions, rendered rows under :data:`FIXED_RENDERING`;
     they are still verified as they were taken (the checks and the triggers installed with them).
Fails: psycopg errors propagate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..catalog import TableSpec

VERSION = "rowmd5-v2"
LEGACY = "rowmd5-v1"  # rows rendered under FIXED_RENDERING (before 2026-11-29)
ALL_ROWS = sql.SQL("true")


@dataclass(frozen=True)
class Checksum:
    rows: int
    total: int
    columns: tuple[str, ...]
    version: str = VERSION

    def __str__(self) -> str:
        return f"{self.version};rows={self.rows};sum={self.total};columns={','.join(self.columns)}"

    @classmethod
    def parse(cls, text: str) -> Checksum:
        version = text.split(";", 1)[0]
        if version not in (VERSION, LEGACY):
            raise ValueError(f"unknown checksum format {text[:40]!r}")
        parts = dict(p.split("=", 1) for p in text.split(";")[1:])
        columns = tuple(c for c in parts["columns"].split(",") if c)
        return cls(int(parts["rows"]), int(parts["sum"]), columns, version)


# The settings under which a LEGACY row text, hence its hash, is the same in every session (a
# transaction's SET LOCAL, or the SET clauses of a change-log function installed with a LEGACY baseline).
FIXED_RENDERING = (("TimeZone", "UTC"), ("DateStyle", "ISO, YMD"), ("IntervalStyle", "postgres"))


def fixed_rendering(conn: psycopg.Connection) -> None:
    """Render rows under :data:`FIXED_RENDERING` for this transaction (LEGACY hashes reproducible)."""
    for name, value in FIXED_RENDERING:
        conn.execute(sql.SQL("SET LOCAL {} = {}").format(sql.SQL(name), sql.Literal(value)))


def fixed_rendering_clauses() -> sql.Composable:
    """:data:`FIXED_RENDERING` as the SET clauses of a function (``CREATE FUNCTION ... SET ...``)."""
    return sql.SQL(" ").join(
        sql.SQL("SET {} = {}").format(sql.SQL(name), sql.Literal(value)) for name, value in FIXED_RENDERING
    )


def row_hash(spec: TableSpec, columns: Sequence[str], alias: str, version: str = VERSION) -> sql.Composable:
    """The 64-bit hash of a row of ``spec``'s table over ``columns`` (the unit of :class:`Checksum`).
    Zero when no column is covered. A LEGACY hash needs its callers to render under FIXED_RENDERING."""
    if not columns:
        return sql.SQL("0")
    timestamps = {c.name for c in spec.columns if c.kind == "timestamptz"} if version == VERSION else set()

    def rendered(column: str) -> sql.Composable:
        value = sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(column))
        return sql.SQL("extract(epoch FROM {})").format(value) if column in timestamps else value

    cols = sql.SQL(", ").join(rendered(c) for c in columns)
    return sql.SQL("('x' || left(md5(ROW({})::text), 16))::bit(64)::bigint").format(cols)


def checksum(
    conn: psycopg.Connection,
    relation: sql.Composable,
    spec: TableSpec,
    columns: Sequence[str],
    where: sql.Composable = ALL_ROWS,
    version: str = VERSION,
) -> Checksum:
    """The checksum of ``relation``'s rows (shaped as ``spec``'s table) meeting ``where`` (on alias
    ``t``) over ``columns`` (call inside a transaction)."""
    if version == LEGACY:
        fixed_rendering(conn)
    if not columns:
        counted = sql.SQL("SELECT count(*) FROM {} t WHERE {}").format(relation, where)
        rows = conn.execute(counted).fetchone()[0]
        return Checksum(rows, 0, (), version)
    rows, total = conn.execute(
        sql.SQL("SELECT count(*), coalesce(sum({}), 0) FROM {} t WHERE {}").format(
            row_hash(spec, columns, "t", version), relation, where
        )
    ).fetchone()
    return Checksum(rows, int(total), tuple(columns), version)


def table_checksum(
    conn: psycopg.Connection, spec: TableSpec, columns: Sequence[str], version: str = VERSION
) -> Checksum:
    with conn.transaction():
        return checksum(conn, sql.Identifier(spec.name), spec, columns, version=version)
