"""The change log: what was written to a migrated table after its load, so checks stay exact live.

In:  a table spec and the columns its load checksum covers.
Out: :func:`install` creates (or replaces) row-level triggers that log every row added or removed
     (an update is both; a TRUNCATE removes every row) into ``migration_audit.row_changes`` with its key,
     row hash (in the version of the table's baseline checksum), the statement, role,
     ``application_name``, client address and transaction. :func:`reset` empties a table's log (a load is
     the new baseline). While a load runs, ``migration_pipeline.loading`` is on and nothing is logged.
     Whether an entry is the app's own write depends on the phase (phase.py): :func:`summary` returns
     the net effect of the explained entries (rows added/removed, hash sums) for the checks,
     :func:`unexplained` describes the others for an operator, :func:`changed_keys_sql` gives the keys of
     explained entries to leave out when comparing row by row with the source, and :func:`compact`
     reduces the explained entries of each key to their net effect so the log does not grow without bound.
Fails: psycopg errors propagate. Writes made with triggers disabled (``session_replication_role =
     replica``) are not logged, so the checks then fail, as they should for unexplained changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..catalog import TableSpec
from . import checksums, keys, phase

LOADING = "migration_pipeline.loading"
# Row-level triggers: an app writes a row or a few per statement, and a row-level trigger logs each with
# one small INSERT, while a statement-level one pays for its transition tables on every statement
# (measured: bench/changelog_bench.py, README). TRUNCATE has no rows to visit, so it logs the whole table.
TRIGGERS = {
    "log_changes_insert": "AFTER INSERT ON {t} FOR EACH ROW",
    "log_changes_update": "AFTER UPDATE ON {t} FOR EACH ROW",
    "log_changes_delete": "AFTER DELETE ON {t} FOR EACH ROW",
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


def install(
    conn: psycopg.Connection, spec: TableSpec, columns: Sequence[str], version: str = checksums.VERSION
) -> None:
    """(Re)create the logging function and triggers of ``spec``'s table (inside the load's transaction),
    hashing rows as the baseline checksum of ``version`` does."""
    table = sql.Identifier(spec.name)
    columns_ = sql.SQL(
        "INSERT INTO migration_audit.row_changes"
        " (table_name, op, row_key, row_hash, changed_at, statement, changed_by, application_name, client_addr, txid)"
    )
    # when the rows changed (not when their transaction began: see phase.explained), and who changed them
    context = sql.SQL(
        "clock_timestamp(), TG_OP, current_user, current_setting('application_name', true), inet_client_addr(),"
        " txid_current()"
    )

    def row(op: str, record: str) -> sql.Composable:  # the OLD or NEW row of a row-level trigger
        return sql.SQL("{columns_} VALUES ({name}, {op}, {key}, {hash}, {context})").format(
            columns_=columns_, name=sql.Literal(spec.name), op=sql.Literal(op),
            key=keys.key_sql(spec.primary_key, record), hash=checksums.row_hash(spec, columns, record, version),
            context=context,
        )  # fmt: skip

    body = sql.SQL(
        "BEGIN\n"
        "  IF current_setting({loading}, true) = 'on' THEN RETURN NULL; END IF;\n"
        "  IF TG_OP = 'TRUNCATE' THEN\n"
        "    {columns_} SELECT {name}, 'D', {key}, {hash}, {context} FROM {table} r;\n"
        "    RETURN NULL;\n"
        "  END IF;\n"
        "  IF TG_OP IN ('UPDATE', 'DELETE') THEN {removed}; END IF;\n"
        "  IF TG_OP IN ('UPDATE', 'INSERT') THEN {added}; END IF;\n"
        "  RETURN NULL;\n"
        "END"
    ).format(
        loading=sql.Literal(LOADING),
        columns_=columns_,
        name=sql.Literal(spec.name),
        key=keys.key_sql(spec.primary_key, "r"),
        hash=checksums.row_hash(spec, columns, "r", version),
        context=context,
        table=table,
        removed=row("D", "old"),
        added=row("I", "new"),
    )
    conn.execute(
        sql.SQL(
            "CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql {settings} AS {body}"
        ).format(
            fn=_function(spec.name),
            # only a LEGACY hash depends on session settings (a SET clause costs every write)
            settings=checksums.fixed_rendering_clauses() if version == checksums.LEGACY else sql.SQL(""),
            body=sql.Literal(body.as_string(conn)),
        )
    )
    for name, when in TRIGGERS.items():
        conn.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(name), table))
        conn.execute(
            sql.SQL("CREATE TRIGGER {name} " + when + " EXECUTE FUNCTION {fn}()").format(
                name=sql.Identifier(name), t=table, fn=_function(spec.name)
            )
        )


def installed(conn: psycopg.Connection, table: str) -> bool:
    """Whether all of ``table``'s logging triggers are in place."""
    found = conn.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass(%s) AND tgname = ANY(%s) AND tgenabled <> 'D'",
        (f"public.{table}", list(TRIGGERS)),
    ).fetchone()[0]
    return found == len(TRIGGERS)


def remove(conn: psycopg.Connection, table: str) -> None:
    """Drop the table's logging triggers for the duration of a load (inside its transaction, so a failed
    load keeps them): even a trigger that logs nothing would make PostgreSQL queue an event for every
    row a bulk statement touches."""
    for name in TRIGGERS:
        conn.execute(
            sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(name), sql.Identifier(table))
        )


def pause(conn: psycopg.Connection, table: str) -> None:
    """Disable the table's logging triggers for the rest of a load that writes into it (inside its
    transaction; :func:`install` puts them back enabled): a disabled trigger queues nothing for the rows
    a bulk statement touches, and disabling it, unlike dropping it, lets readers go on."""
    present = conn.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass(%s) AND tgname = ANY(%s)",
        (f"public.{table}", list(TRIGGERS)),
    ).fetchall()
    for (name,) in present:
        conn.execute(
            sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(sql.Identifier(table), sql.Identifier(name))
        )


def suppress_for_load(conn: psycopg.Connection) -> None:
    """Inside a load's transaction: the load's own writes are not app changes."""
    conn.execute("SELECT set_config(%s, 'on', true)", (LOADING,))


def reset(conn: psycopg.Connection, table: str) -> None:
    conn.execute("DELETE FROM migration_audit.row_changes WHERE table_name = %s", (table,))


def summary(conn: psycopg.Connection, table: str) -> Changes:
    """The net effect of the app's own writes to ``table`` since its baseline (explained entries only)."""
    row = conn.execute(
        sql.SQL(
            "SELECT count(*) FILTER (WHERE op = 'I'), count(*) FILTER (WHERE op = 'D'),"
            " coalesce(sum(row_hash) FILTER (WHERE op = 'I'), 0), coalesce(sum(row_hash) FILTER (WHERE op = 'D'), 0)"
            " FROM migration_audit.row_changes c WHERE table_name = %s AND {}"
        ).format(phase.explained("c")),
        (table,),
    ).fetchone()
    return Changes(row[0], row[1], int(row[2]), int(row[3]))


def unexplained(conn: psycopg.Connection, table: str, keys: int = 5) -> list[dict]:
    """The change-log entries of ``table`` that are not the app's own writes (see phase.explained), by
    statement, role, application and client: how many rows, when, the first keys."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            sql.SQL(
                "SELECT coalesce(statement, 'unknown statement') AS statement,"
                " coalesce(changed_by, 'unknown role') AS role, coalesce(application_name, '') AS application_name,"
                " coalesce(host(client_addr), 'local socket') AS client_addr,"
                " greatest(count(*) FILTER (WHERE op = 'I'), count(*) FILTER (WHERE op = 'D')) AS rows,"
                " count(*) FILTER (WHERE op = 'I') AS added, count(*) FILTER (WHERE op = 'D') AS removed,"
                " min(changed_at) AS first_at, max(changed_at) AS last_at,"
                " (array_agg(DISTINCT row_key ORDER BY row_key))[1:%s] AS first_keys"
                " FROM migration_audit.row_changes c WHERE table_name = %s AND NOT {}"
                " GROUP BY 1, 2, 3, 4 ORDER BY min(changed_at), 1"
            ).format(phase.explained("c")),
            (keys, table),
        ).fetchall()


def explain(table: str, found: list[dict], now: phase.Phase) -> list[str]:
    """One line per group of unexplained changes, saying what happened and what to do."""
    lines = []
    for g in found:
        app = f", application_name {g['application_name']!r}" if g["application_name"] else ""
        when = g["first_at"].isoformat(timespec="seconds")
        if g["last_at"] != g["first_at"]:
            when += f" to {g['last_at'].isoformat(timespec='seconds')}"
        lines.append(
            f"{table}: {g['rows']} row(s) changed by {g['statement']} at {when} by role {g['role']}{app}, "
            f"client {g['client_addr']}; keys {', '.join(map(str, g['first_keys']))}"
            f"{'…' if g['rows'] > len(g['first_keys']) else ''} — not a write of the app ({_why(now)})"
        )
    if lines:
        lines.append(
            f"{table}: PostgreSQL was changed outside the migration; re-load the table from the source "
            "(migrate it again) to restore the proven content, or find and undo the change"
        )
    return lines


def _why(now: phase.Phase) -> str:
    if now.name == phase.SWITCHED:
        roles = phase.app_roles()
        return (
            f"the app writes to PostgreSQL since {now.since:%Y-%m-%d %H:%M:%S%z} as {', '.join(roles)}"
            if roles
            else f"made before the switch was declared at {now.since:%Y-%m-%d %H:%M:%S%z}"
        )
    return f"the database is {now.name}: the app does not write to PostgreSQL"


def changed_keys_sql(table: str) -> sql.Composable:
    """A query of the keys (as text) of rows the app itself changed since the baseline of ``table``."""
    return sql.SQL("SELECT row_key FROM migration_audit.row_changes c WHERE table_name = {} AND {}").format(
        sql.Literal(table), phase.explained("c")
    )


def compact(conn: psycopg.Connection, table: str) -> int:
    """Reduce the app's logged writes to ``table`` to their net effect per key: the first entry if it
    removed the row as it was at the baseline, the last if it added the row as it is now. Every entry
    between cancels out (a key's entries alternate: added, removed, added...), so the checks' sums are
    unchanged. Keys with an unexplained entry are left as they are (the evidence stays). Returns how
    many entries were removed; safe while the app writes (later entries keep alternating)."""
    explained = phase.explained("c")
    removed = conn.execute(
        sql.SQL(
            "WITH ranked AS ("
            " SELECT id, op, row_number() OVER (PARTITION BY row_key ORDER BY id) AS n_first,"
            " row_number() OVER (PARTITION BY row_key ORDER BY id DESC) AS n_last"
            " FROM migration_audit.row_changes c WHERE table_name = %(t)s AND {explained}"
            " AND row_key NOT IN (SELECT row_key FROM migration_audit.row_changes c"
            "                     WHERE table_name = %(t)s AND NOT {explained} AND row_key IS NOT NULL))"
            " DELETE FROM migration_audit.row_changes d USING ranked r WHERE d.id = r.id"
            " AND NOT ((r.n_first = 1 AND r.op = 'D') OR (r.n_last = 1 AND r.op = 'I'))"
        ).format(explained=explained),
        {"t": table},
    ).rowcount
    return removed


def size(conn: psycopg.Connection) -> dict[str, int]:
    """Entries in the change log per table."""
    return dict(
        conn.execute("SELECT table_name, count(*) FROM migration_audit.row_changes GROUP BY 1 ORDER BY 1")
    )
