"""Rows an index of the target cannot hold, quarantined before they fail the whole table's load.

In:  the load's staging table (inside its transaction) and the target table whose indexes it will fill.
Out: :func:`reject_unindexable` moves every staged row for which PostgreSQL cannot build an expression
     index's entry into the rejects table, with the server's own reason. The case met so far: the
     full-text index ``idx_tweets_text`` refuses a text whose words exceed 1MB ("string is too long for
     tsvector"), a value the ``text`` column itself stores. Only rows holding more than
     :data:`SUSPECT_BYTES` in the indexed columns can hit such limits, so only they are tried, each in a
     subtransaction: ordinary tables cost one scan of the stage, and none when the load knows the longest
     COPY line (or binary tuple) it sent: texts in a UTF-8 database are at most as long as they were there.
Fails: psycopg errors propagate (the caller's transaction rolls back).
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from ..catalog import TableSpec

# tsvector holds at most 1MB of lexemes, and a lexeme is at most 1.5 times as long as the word it came
# from (lower-casing a few letters takes more UTF-8 bytes): below this many bytes in the indexed columns,
# an entry always fits
SUSPECT_BYTES = 1 << 19

_TRY_ENTRY = """
CREATE OR REPLACE FUNCTION pg_temp.index_entry_error(statement text, row_id bigint) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement USING row_id;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLERRM;
END
$$
"""


def _expression_indexes(conn: psycopg.Connection, table: str) -> list[tuple[str, str, list[str]]]:
    """(index name, its expressions as SQL, the table columns they read) of each expression index."""
    return conn.execute(
        """
        SELECT c.relname, pg_get_expr(i.indexprs, i.indrelid),
               array(SELECT a.attname FROM pg_depend d JOIN pg_attribute a
                     ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                     WHERE d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid
                       AND d.refobjid = i.indrelid AND d.refobjsubid > 0 ORDER BY a.attnum)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = %s::regclass AND i.indexprs IS NOT NULL ORDER BY 1
        """,
        (table,),
    ).fetchall()


def reject_unindexable(
    conn: psycopg.Connection,
    spec: TableSpec,
    columns: Sequence[str],
    stage: sql.Identifier,
    rejects: sql.Identifier,
    longest_line: int | None = None,
) -> int:
    """Move staged rows whose entry in one of ``spec``'s expression indexes cannot be built into
    ``rejects`` (``_rowid, column_name, kind, reason``); returns how many. ``longest_line``: the bytes of
    the longest COPY line that staged the rows, where known."""
    moved = 0
    for index, expression, read in _expression_indexes(conn, spec.name):
        if not read or not set(read) <= set(columns):
            continue  # reads a column left to its default: the default is small
        if _all_short(conn, spec, read, longest_line):
            continue
        size = sql.SQL(" + ").join(
            sql.SQL("coalesce(octet_length({}::text), 0)").format(sql.Identifier(c)) for c in read
        )
        suspects = sql.SQL("SELECT _rowid FROM {} WHERE {} > {}").format(
            stage, size, sql.Literal(SUSPECT_BYTES)
        )
        if not conn.execute(sql.SQL("SELECT EXISTS ({})").format(suspects)).fetchone()[0]:
            continue
        conn.execute(_TRY_ENTRY)
        entry = sql.SQL("SELECT {} FROM {} WHERE _rowid = $1").format(sql.SQL(expression), stage)
        moved += conn.execute(
            sql.SQL(
                "WITH tried AS (SELECT _rowid, pg_temp.index_entry_error(%(entry)s, _rowid) AS error"
                " FROM {stage} WHERE _rowid IN ({suspects})),"
                " bad AS (DELETE FROM {stage} s USING tried t WHERE s._rowid = t._rowid AND t.error IS NOT NULL"
                " RETURNING s._rowid, t.error, {size} AS bytes)"
                " INSERT INTO {rejects} SELECT _rowid, %(column)s, %(kind)s,"
                " format('%%s of %%s bytes cannot be indexed by %%s: %%s', %(shown)s::text, bytes, %(index)s::text, error)"
                " FROM bad"
            ).format(stage=stage, suspects=suspects, size=size, rejects=rejects),
            {
                "entry": entry.as_string(conn),
                "column": read[0],
                "kind": f"{read[0]}: too large for index {index}",
                "shown": ", ".join(read),
                "index": index,
            },
        ).rowcount
    return moved


def _all_short(
    conn: psycopg.Connection, spec: TableSpec, read: Sequence[str], longest_line: int | None
) -> bool:
    """Whether no staged row can hold more than :data:`SUSPECT_BYTES` in the ``read`` columns, known without
    a scan: they are texts (a jsonb's text can be longer than the JSON it was given: ``1e9``), every one
    of them was in a COPY line (escaped, never shorter than the text) or binary tuple of at most
    ``longest_line`` bytes, and its encoding is the database's, UTF-8 (another could take more bytes a
    character)."""
    return (
        longest_line is not None
        and longest_line <= SUSPECT_BYTES
        and all(spec.column(c).kind == "text" for c in read)
        and conn.info.encoding == "utf-8"
        and conn.info.parameter_status("server_encoding") == "UTF8"
    )
