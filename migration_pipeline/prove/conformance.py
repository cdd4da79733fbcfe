"""Schema conformance: does a live table still match what ``schema/`` creates?

In:  a connection and a table name.
Out: :func:`schema_problems` applies the DDL of ``schema/`` into a scratch schema inside a transaction
     that is rolled back, describes both tables the same way from PostgreSQL's catalog (columns, types,
     NOT NULL, defaults, constraints, indexes) and lists every difference; :func:`sequence_problems`
     checks that each SERIAL sequence would hand out an id past the column's current maximum;
     :func:`schema_conforms` is the check over both. So the DDL files stay the single source of truth:
     nothing about the expected schema is restated here.
Fails: psycopg errors propagate.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from ..catalog import Catalog, TableSpec
from .outcome import Outcome, Subject

SCRATCH = "_schema_expected"


def _describe(conn: psycopg.Connection, schema: str, table: str) -> dict[str, dict[str, str]]:
    """Columns, constraints and indexes of ``schema.table`` as catalog text, with names unqualified
    (``search_path`` is set to ``schema`` so PostgreSQL prints references relative to it)."""
    conn.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(schema)))
    relation = f"{schema}.{table}"
    columns = conn.execute(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod)
               || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
               || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
        FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
        """,
        (relation,),
    ).fetchall()
    constraints = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass"
        " AND contype IN ('p', 'u', 'f', 'c')",
        (relation,),
    ).fetchall()
    indexes = conn.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = %s::regclass",
        (relation,),
    ).fetchall()
    return {
        "column": dict(columns),
        "constraint": dict(constraints),
        "index": {name: definition.replace(f"{schema}.", "") for name, definition in indexes},
    }


def _expected(conn: psycopg.Connection, catalog: Catalog, table: str) -> dict[str, dict[str, str]]:
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCRATCH)))
    conn.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(SCRATCH)))
    for statement in catalog.public_ddl:  # not the audit schema's: its IF NOT EXISTS would lock tables in use
        conn.execute(statement)
    return _describe(conn, SCRATCH, table)


def schema_problems(conn: psycopg.Connection, catalog: Catalog, table: str) -> tuple[list[str], dict]:
    """(differences between the live table and schema/, what was compared)."""
    with conn.transaction(force_rollback=True):
        expected = _expected(conn, catalog, table)
        actual = _describe(conn, "public", table)
    problems = []
    for kind in ("column", "constraint", "index"):
        for name in sorted(expected[kind].keys() | actual[kind].keys()):
            want, have = expected[kind].get(name), actual[kind].get(name)
            if want is None:
                problems.append(f"unexpected {kind} {name}: {have}")
            elif have is None:
                problems.append(f"missing {kind} {name}: {want}")
            elif want != have:
                problems.append(f"{kind} {name} is {have!r}, schema/ says {want!r}")
    compared = {kind: len(expected[kind]) for kind in expected}
    return problems, compared


def sequence_problems(conn: psycopg.Connection, spec: TableSpec) -> tuple[list[str], dict]:
    """Each SERIAL column's sequence must exist and its next value be past the column's maximum."""
    problems, numbers = [], {}
    for column in spec.serial_columns:
        sequence = conn.execute("SELECT pg_get_serial_sequence(%s, %s)", (spec.name, column)).fetchone()[0]
        if sequence is None:
            problems.append(f"{column} has no owned sequence")
            continue
        last, called = conn.execute(
            sql.SQL("SELECT last_value, is_called FROM {}").format(sql.SQL(sequence))
        ).fetchone()
        top = conn.execute(
            sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(column), sql.Identifier(spec.name))
        ).fetchone()[0]
        next_value = last + 1 if called else last
        numbers[column] = {"sequence": sequence, "next_value": next_value, "max_id": top}
        if top is not None and next_value <= top:
            problems.append(
                f"sequence {sequence} would hand out {next_value}, but {column} already reaches {top}"
            )
    return problems, numbers


def schema_conforms(s: Subject) -> Outcome:
    problems, compared = schema_problems(s.conn, s.catalog, s.table)
    seq_problems, sequences = sequence_problems(s.conn, s.catalog.table(s.table))
    metadata = {"compared": compared, "sequences": sequences}
    return Outcome(
        "schema_conforms", not (problems or seq_problems), metadata, tuple(problems + seq_problems)
    )
