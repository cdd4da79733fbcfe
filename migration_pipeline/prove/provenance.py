"""Provenance: where each target table came from, when, with which code, and what was rejected.

In:  a connection to the target (its ``migration_audit.table_loads``, ``rejected_rows`` and
     ``row_changes``) and the catalog.
Out: :func:`table_history` (a table's loads, newest first, each with its rejections counted by kind and
     the code version that loaded it, code_version.py); :func:`render` (a Markdown answer for every table,
     with the SQL that lists the rows behind each number, and the operator's corrections of quarantined
     rows). ``python -m migration_pipeline.prove.provenance``
     prints it (``--table``, ``--out``).
Fails: psycopg errors propagate; a table never loaded is reported as such, not as an error.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from ..catalog import Catalog, load_catalog
from ..move import corrections
from ..move.code_version import code_version


def table_history(conn: psycopg.Connection, table: str, limit: int = 10) -> list[dict]:
    """``table``'s loads, newest first: the table_loads columns plus ``rejected_by_kind`` {kind: rows}."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """
            SELECT l.*, extract(epoch FROM l.finished_at - l.started_at)::float8 AS seconds,
                   coalesce((SELECT jsonb_object_agg(kind, n ORDER BY n DESC)
                             FROM (SELECT coalesce(kind, reason) AS kind, count(*) AS n
                                   FROM migration_audit.rejected_rows r
                                   WHERE r.run_id = l.run_id AND r.table_name = l.table_name
                                   GROUP BY 1) k), '{}') AS rejected_by_kind
            FROM migration_audit.table_loads l
            WHERE l.table_name = %s
            ORDER BY l.finished_at DESC
            LIMIT %s
            """,
            (table, limit),
        ).fetchall()


def app_changes(conn: psycopg.Connection, table: str) -> dict[str, int]:
    """Rows the app added/removed in ``table`` since its last load (the change log)."""
    counts = dict(
        conn.execute(
            "SELECT op, count(*) FROM migration_audit.row_changes WHERE table_name = %s GROUP BY op", (table,)
        ).fetchall()
    )
    return {"added": counts.get("I", 0), "removed": counts.get("D", 0)}


def quarantine_sql(run_id: str, table: str) -> str:
    return (
        "SELECT source_key, column_name, kind, reason, raw_row\n"
        "FROM migration_audit.rejected_rows\n"
        f"WHERE run_id = '{run_id}' AND table_name = '{table}'\nORDER BY kind, source_key;"
    )


def load_sql(run_id: str, table: str) -> str:
    return f"SELECT * FROM migration_audit.table_loads\nWHERE run_id = '{run_id}' AND table_name = '{table}';"


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z") if value is not None else "unknown"


def render_table(conn: psycopg.Connection, table: str, history: int = 10) -> str:
    loads = table_history(conn, table, history)
    lines = [f"## {table}", ""]
    if not loads:
        return "\n".join([*lines, "Never loaded by this pipeline.", ""])
    last = loads[0]
    version = last["code_version"] or "not recorded"
    current = "the current code" if last["code_version"] == code_version() else f"current is {code_version()}"
    changes = app_changes(conn, table)
    lines += [
        f"- **From**: table `{table}` of `{last['source_path'] or 'unrecorded source'}`, read from a snapshot "
        f"taken {_when(last['snapshot_taken_at'])} (sha256 `{last['snapshot_sha256'] or 'not recorded'}`)",
        f"- **When**: run `{last['run_id']}` ({last['mode']} load), {_when(last['started_at'])} to "
        f"{_when(last['finished_at'])} ({last['seconds']:.1f} s)",
        f"- **Code**: version `{version}` ({current})",
        f"- **Rows**: {last['source_rows']:,} in the source = {last['loaded_rows']:,} loaded + "
        f"{last['rejected_rows']:,} quarantined",
        f"- **Since**: the app added {changes['added']:,} and removed {changes['removed']:,} rows "
        "(updates count as both)",
    ]
    lines += _corrections(conn, table)
    if last["rejected_by_kind"]:
        lines += ["", "| rejected because | rows |", "|---|---:|"]
        lines += [f"| {kind} | {n:,} |" for kind, n in last["rejected_by_kind"].items()]
    lines += [
        "",
        "The rejected rows, with their original values:",
        "",
        f"```sql\n{quarantine_sql(last['run_id'], table)}\n```",
        "",
        "| run | mode | finished | source | loaded | rejected | code | snapshot |",
        "|---|---|---|---:|---:|---:|---|---|",
    ]
    lines += [
        f"| `{r['run_id']}` | {r['mode']} | {_when(r['finished_at'])} | {r['source_rows']:,} | "
        f"{r['loaded_rows']:,} | {r['rejected_rows']:,} | `{r['code_version'] or '-'}` | "
        f"`{(r['snapshot_sha256'] or '-')[:12]}` |"
        for r in loads
    ]
    return "\n".join([*lines, ""])


def _corrections(conn: psycopg.Connection, table: str, shown: int = 10) -> list[str]:
    """The operator's corrections of quarantined rows of ``table`` (``quarantine retry``), newest first."""
    trail = corrections.history(conn, [table])
    if not trail:
        return []
    states = Counter(c["state"] for c in trail)
    lines = [
        f"- **Corrected**: {len(trail):,} quarantined rows corrected by an operator: "
        + ", ".join(f"{n:,} {state}" for state, n in sorted(states.items()))
        + f" (`migration-pipeline quarantine corrections {table}`)",
        "",
        "| corrected | by | source key | outcome | load | from |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {_when(c['corrected_at'])} | {c['corrected_by']} | `{c['source_key']}` | {c['state']}"
        f"{' (' + c['outcome'] + ')' if c['outcome'] else ''} | `{c['run_id'] or '-'}` | {c['correction_from']} |"
        for c in reversed(trail[-shown:])
    ]
    return lines


def render(conn: psycopg.Connection, catalog: Catalog, tables: list[str] | None = None) -> str:
    parts = ["# Provenance of the migrated tables", ""]
    parts += [render_table(conn, name) for name in tables or catalog.names]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    from ..connect.settings import load_settings
    from ..connect.target import connect

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", action="append", help="only this table (repeatable)")
    parser.add_argument("--out", type=Path, help="write the Markdown here instead of stdout")
    args = parser.parse_args(argv)
    catalog = load_catalog()
    unknown = [t for t in args.table or () if t not in catalog.names]
    if unknown:
        parser.error(f"unknown table(s) {', '.join(unknown)}; known: {', '.join(catalog.names)}")
    with connect(load_settings()) as conn:
        text = render(conn, catalog, args.table)
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
