"""The app's SQLite format, for the rollback export: each table's DDL, each timestamp column's habit, and
the column writers that put PostgreSQL's values in that form (the rules of sqlite_values.py).

In:  a template (a SQLite file shaped like the app's, e.g. the migration's source snapshot, read with
     mode=ro&immutable=1) or the app's DDL of schema/sqlite/; a connection to the target.
Out: :func:`read_template` (the template's CREATE TABLE/INDEX statements, and per timestamp column the
     habit most of its values follow), :func:`script_ddl` (the same from a script of schema/sqlite/),
     :func:`column_writer` (one column's rule, counting the values SQLite cannot hold exactly) and
     :class:`JsonNumbers` (whether a top-level JSON number survives the column's affinity).
Fails: sqlite3 and psycopg errors propagate.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import psycopg

from ..catalog import Catalog
from ..move.convert import Rejected, convert_json
from ..move.source import Snapshot, quote
from .sqlite_values import compact_json, format_timestamp, habit_of, is_top_level_number

HABIT_SAMPLE = 1_000  # template values looked at per timestamp column


@dataclass(frozen=True)
class TableDDL:
    create: str
    indexes: tuple[str, ...]
    origin: str


def _ddl(query: Callable[[str], list[tuple]], origin: str) -> dict[str, TableDDL]:
    """{table: its CREATE TABLE and CREATE INDEX statements} from a SQLite database's sqlite_master."""
    rows = query("SELECT type, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid")
    return {
        name: TableDDL(create, tuple(t for k, n, t in rows if k == "index" and n == name), origin)
        for kind, name, create in rows
        if kind == "table"
    }


@cache
def script_ddl(script: str) -> dict[str, TableDDL]:
    """The DDL of a script of schema/sqlite/ (the app's own CREATE TABLE statements, as sample_data writes them)."""
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(script)
        return _ddl(lambda q: db.execute(q).fetchall(), "sample_data")
    finally:
        db.close()


def read_template(path: Path, catalog: Catalog) -> tuple[dict[str, TableDDL], dict[tuple[str, str], str]]:
    """The template's DDL, and per timestamp column the habit most of its text values follow."""
    habits = {}
    with Snapshot(path) as snap:
        ddl = _ddl(snap.query, "template")
        for spec in catalog.tables:
            present = snap.columns(spec.name) if spec.name in ddl else []
            for col in (c.name for c in spec.columns if c.kind == "timestamptz" and c.name in present):
                q = quote(col)
                select = f"SELECT {q} FROM {quote(spec.name)} WHERE typeof({q}) = 'text' LIMIT {HABIT_SAMPLE}"
                habits[spec.name, col] = habit_of(v for (v,) in snap.query(select) if isinstance(v, str))
    return ddl, habits


class JsonNumbers:
    """Whether a top-level JSON number survives SQLite: a column declared JSON has NUMERIC affinity and
    stores the text '1.0' as the integer 1. Asks SQLite what it stores and PostgreSQL whether the load's
    converter turns that back into the same jsonb (rare values: only top-level numbers come here)."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn
        self.db = sqlite3.connect(":memory:")
        self.tables: dict[str, str] = {}

    def exact(self, text: str, declared: str) -> bool:
        if declared not in self.tables:
            self.tables[declared] = f"p{len(self.tables)}"
            self.db.execute(f"CREATE TABLE {self.tables[declared]} (v {declared})")
        table = self.tables[declared]
        self.db.execute(f"INSERT INTO {table} VALUES (?)", (text,))
        stored = self.db.execute(f"SELECT v FROM {table}").fetchone()[0]
        self.db.execute(f"DELETE FROM {table}")
        try:
            back = convert_json(stored)
        except Rejected:
            return False
        return self.conn.execute("SELECT %s::jsonb::text = %s::jsonb::text", (back, text)).fetchone()[0]


def column_writer(kind: str, habit: str, declared: str, numbers: JsonNumbers, inexact: Counter, column: str):
    """The writer of a timestamptz or jsonb ``column`` (declared ``declared`` in SQLite): the value in the
    app's form; one SQLite cannot hold exactly is written anyway and counted in ``inexact``."""
    if kind == "timestamptz":

        def write(value: str) -> str:
            out = format_timestamp(value, habit)
            if out is None:
                inexact[column] += 1
                return value  # as PostgreSQL wrote it: the app (and a reload) sees what is there
            return out

    else:

        def write(value: str) -> str:
            out = compact_json(value)
            if is_top_level_number(out) and not numbers.exact(out, declared):
                inexact[column] += 1
            return out

    return write
