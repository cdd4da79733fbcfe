"""The change log: what the app did to a migrated table after its load, so checks stay exact live.

In:  a table spec and the columns its load checksum covers.
Out: :func:`install` creates (or replaces) statement-level triggers with transition tables that log
     every row the app adds or removes (an update is both) into ``migration_audit.row_changes`` with its
     key and row hash, rendered with fixed settings so it equals the load checksum's hash.
     :func:`reset` empties a table's log (a load is the new baseline). While a load runs,
     ``migration_pipeline.loading`` is on and nothing is logged. :func:`summary` returns the net effect
     (rows added/removed, hash sums) for the checks; :func:`changed_keys_sql` the keys to leave out when
     comparing row by row with the source.
Fails: psycopg errors propagate. Writes made with triggers disabled (``session_replication_role =
     replica``) are not logged, so the checks then fail, as they should for unexplained changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from .catalog import TableSpec

LOADING = "migration_pipeline.loading"
# statement-level triggers with transition tables: one call per statement, however many rows
TRIGGERS = {
    "log_changes_insert": "AFTER INSERT ON {t} REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT",
    "log_changes_update": "AFTER UPDATE ON {t} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT",
    "log_changes_delete": "AFTER DELETE ON {t} REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT",
    "log_changes_truncate": "BEFORE TRUNCATE ON {t} FOR EACH STATEMENT",
}


@dataclass(frozen=True)
class Changes:
    added: int = 0
    removed: int = 0
    added_hash: int = 0
    removed_hash: int = 0


def _function(table: str) -> sql.Identifier:
    return sql.Identifier("migration_audit", f"log_changes__{table}")


def row_hash(columns: Sequence[str], alias: str) -> sql.Composable:
    """The 64-bit hash of a row's text over ``columns`` (the unit of content.Checksum; rendered under
    fixed TimeZone/DateStyle by its callers). Zero when no column is covered."""
    if not columns:
        return sql.SQL("0")
    cols = sql.SQL(", ").join(
        sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(c)) for c in columns
    )
    return sql.SQL("('x' || left(md5(ROW({})::text), 16))::bit(64)::bigint").format(cols)


def _key(spec: TableSpec, alias: str) -> sql.Composable:
    return sql.SQL("concat_ws(',', {})").format(
        sql.SQL(", ").join(
            sql.SQL("{}.{}::text").format(sql.Identifier(alias), sql.Identifier(c)) for c in spec.primary_key
        )
    )


def install(conn: psycopg.Connection, spec: TableSpec, columns: Sequence[str]) -> None:
    """(Re)create the logging function and triggers of ``spec``'s table (inside the load's transaction)."""
    table = sql.Identifier(spec.name)
    log = "INSERT INTO migration_audit.row_changes (table_name, op, row_key, row_hash) SELECT {name}, {op}, {key}, {hash} FROM {rows} r"

    def logged(op: str, rows: sql.Composable) -> sql.Composable:
        return sql.SQL(log).format(
            name=sql.Literal(spec.name),
            op=sql.Literal(op),
            key=_key(spec, "r"),
            hash=row_hash(columns, "r"),
            rows=rows,
        )

    body = sql.SQL(
        "BEGIN\n"
        "  IF current_setting({loading}, true) = 'on' THEN RETURN NULL; END IF;\n"
        "  IF TG_OP = 'TRUNCATE' THEN {truncated}; RETURN NULL; END IF;\n"
        "  IF TG_OP IN ('UPDATE', 'DELETE') THEN {removed}; END IF;\n"
        "  IF TG_OP IN ('UPDATE', 'INSERT') THEN {added}; END IF;\n"
        "  RETURN NULL;\n"
        "END"
    ).format(
        loading=sql.Literal(LOADING),
        truncated=logged("D", table),
        removed=logged("D", sql.Identifier("old_rows")),
        added=logged("I", sql.Identifier("new_rows")),
    )
    conn.execute(
        sql.SQL(
            "CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql"
            " SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' AS {body}"
        ).format(fn=_function(spec.name), body=sql.Literal(body.as_string(conn)))
    )
    for name, when in TRIGGERS.items():
        conn.execute(
            sql.SQL("CREATE OR REPLACE TRIGGER {name} " + when + " EXECUTE FUNCTION {fn}()").format(
                name=sql.Identifier(name), t=table, fn=_function(spec.name)
            )
        )


def remove(conn: psycopg.Connection, table: str) -> None:
    """Drop the table's logging triggers for the duration of a load (inside its transaction, so a failed
    load keeps them): even a trigger that logs nothing would make PostgreSQL keep every row a bulk
    statement touches in a transition table."""
    for name in TRIGGERS:
        conn.execute(
            sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(name), sql.Identifier(table))
        )


def suppress_for_load(conn: psycopg.Connection) -> None:
    """Inside a load's transaction: the load's own writes are not app changes."""
    conn.execute("SELECT set_config(%s, 'on', true)", (LOADING,))


def reset(conn: psycopg.Connection, table: str) -> None:
    conn.execute("DELETE FROM migration_audit.row_changes WHERE table_name = %s", (table,))


def summary(conn: psycopg.Connection, table: str) -> Changes:
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE op = 'I'), count(*) FILTER (WHERE op = 'D'),"
        " coalesce(sum(row_hash) FILTER (WHERE op = 'I'), 0), coalesce(sum(row_hash) FILTER (WHERE op = 'D'), 0)"
        " FROM migration_audit.row_changes WHERE table_name = %s",
        (table,),
    ).fetchone()
    return Changes(row[0], row[1], int(row[2]), int(row[3]))


def changed_keys_sql(table: str) -> sql.Composable:
    """A query of the keys (as text) of rows the app touched since the load of ``table``."""
    return sql.SQL("SELECT row_key FROM migration_audit.row_changes WHERE table_name = {}").format(
        sql.Literal(table)
    )
