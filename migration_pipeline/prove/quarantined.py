"""The rows each table's latest load quarantined, for people: counts, a preview, an export for the app team.

In:  a connection to the target and table names (the catalog's, in its order).
Out: :func:`counts` per table; :func:`rows` yields one dict per quarantined row (:data:`FIELDS`: the
     table, the row's source key and rowid, the column and its offending value, the reason, the raw row
     as the source held it, the load's run id and when); :func:`export` writes them as CSV or JSON Lines.
Fails: psycopg errors when the audit tables cannot be read.

"Quarantined" means what the table's latest load (full or delta, ``migration_audit.table_loads``) left
quarantined: the rows an operator still has to look at, not every rejection in the audit trail.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import psycopg
from psycopg import sql

from ..move.audit import LATEST_LOADS

FIELDS = (
    "table_name",
    "source_key",
    "source_rowid",
    "column_name",
    "value",
    "kind",
    "reason",
    "raw_row",
    "run_id",
    "rejected_at",
)
FORMATS = ("csv", "jsonl")

_CURRENT = sql.SQL(
    "FROM migration_audit.rejected_rows r JOIN ({}) l USING (table_name, run_id) WHERE r.table_name = ANY(%s)"
).format(LATEST_LOADS)


# The rows the table's latest load quarantined that its previous load did not and nobody acknowledged
# (same source key and kind of problem): what the quarantine check warns of.
_NEW = sql.SQL(
    """
    WITH loads AS (
        SELECT run_id, row_number() OVER (ORDER BY finished_at DESC) AS n
        FROM migration_audit.table_loads WHERE table_name = %(table)s
    )
    SELECT r.source_key, r.column_name, r.raw_row -> r.column_name, r.kind, r.reason
    FROM migration_audit.rejected_rows r
    WHERE r.table_name = %(table)s AND r.run_id = (SELECT run_id FROM loads WHERE n = 1)
      AND NOT EXISTS (
        SELECT 1 FROM migration_audit.rejected_rows p
        WHERE p.table_name = %(table)s AND p.run_id = (SELECT run_id FROM loads WHERE n = 2)
          AND p.source_key IS NOT DISTINCT FROM r.source_key AND p.kind IS NOT DISTINCT FROM r.kind)
      AND NOT EXISTS (
        SELECT 1 FROM migration_audit.quarantine_seen s
        WHERE s.table_name = %(table)s
          AND s.source_key IS NOT DISTINCT FROM r.source_key AND s.kind IS NOT DISTINCT FROM r.kind)
    ORDER BY r.source_rowid NULLS LAST
    """
)


def new_rows(conn: psycopg.Connection, table: str) -> list[dict]:
    """The rows ``table``'s latest load quarantined anew: not by its previous load, not acknowledged."""
    fields = ("source_key", "column_name", "value", "kind", "reason")
    return [dict(zip(fields, r, strict=True)) for r in conn.execute(_NEW, {"table": table}).fetchall()]


def acknowledge(conn: psycopg.Connection, tables: Sequence[str], by: str) -> dict[str, int]:
    """Record the rows the latest loads of ``tables`` left quarantined as seen by ``by``; returns how many
    were newly acknowledged per table."""
    done = {}
    with conn.transaction():
        for table in tables:
            done[table] = conn.execute(
                sql.SQL(
                    "INSERT INTO migration_audit.quarantine_seen (table_name, source_key, kind, run_id, seen_by)"
                    " SELECT r.table_name, r.source_key, r.kind, r.run_id, %s {} AND NOT EXISTS ("
                    " SELECT 1 FROM migration_audit.quarantine_seen s WHERE s.table_name = r.table_name"
                    " AND s.source_key IS NOT DISTINCT FROM r.source_key AND s.kind IS NOT DISTINCT FROM r.kind)"
                ).format(_CURRENT),
                (by, [table]),
            ).rowcount
    return done


def counts(conn: psycopg.Connection, tables: Sequence[str]) -> dict[str, int]:
    """{table: rows its latest load left quarantined} for every table in ``tables`` (0 when none)."""
    found = dict(
        conn.execute(
            sql.SQL("SELECT r.table_name, count(*) {} GROUP BY r.table_name").format(_CURRENT),
            (list(tables),),
        ).fetchall()
    )
    return {table: found.get(table, 0) for table in tables}


def rows(conn: psycopg.Connection, tables: Sequence[str], limit: int | None = None) -> Iterator[dict]:
    """The quarantined rows of ``tables`` in table order, then source rowid (at most ``limit`` per table)."""
    for table in tables:
        query = sql.SQL(
            "SELECT r.table_name, r.source_key, r.source_rowid, r.column_name, r.raw_row -> r.column_name,"
            " r.kind, r.reason, r.raw_row, r.run_id, r.rejected_at {} ORDER BY r.source_rowid NULLS LAST {}"
        ).format(_CURRENT, sql.SQL("LIMIT {}").format(limit) if limit is not None else sql.SQL(""))
        with conn.cursor(name=None) as cur:
            for record in cur.execute(query, ([table],)):
                yield dict(zip(FIELDS, record, strict=True))


def export(conn: psycopg.Connection, tables: Sequence[str], out: Path, fmt: str) -> int:
    """Write the quarantined rows of ``tables`` to ``out`` as ``csv`` or ``jsonl``; returns how many.
    In CSV the value and the raw row are JSON text; in JSON Lines they are JSON values."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")
    written = 0
    with out.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, FIELDS) if fmt == "csv" else None
        if writer is not None:
            writer.writeheader()
        for row in rows(conn, tables):
            row["rejected_at"] = row["rejected_at"].isoformat()
            if writer is not None:
                writer.writerow({**row, "value": _json(row["value"]), "raw_row": _json(row["raw_row"])})
            else:
                file.write(json.dumps(row, ensure_ascii=False) + "\n")
            written += 1
    return written


def _json(value: object) -> str:
    return "" if value is None else json.dumps(value, ensure_ascii=False)


def preview_markdown(conn: psycopg.Connection, table: str, limit: int = 20) -> tuple[int, str]:
    """(rows ``table``'s latest load left quarantined, a Markdown table of the first ``limit`` of them:
    source key, column, offending value, reason, raw row) for the table's page in the UI."""
    total = counts(conn, [table])[table]
    if not total:
        return 0, "No quarantined rows."
    lines = [
        f"{total:,} quarantined rows" + (f", the first {limit}:" if total > limit else ":"),
        "",
        "| source key | column | value | reason | raw row |",
        "|---|---|---|---|---|",
    ]
    for row in rows(conn, [table], limit):
        cells = (
            row["source_key"],
            row["column_name"] or "",
            _json(row["value"]),
            row["reason"],
            _json(row["raw_row"]),
        )
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    if total > limit:
        lines += [
            "",
            f"All of them: `migration-pipeline quarantine export {table} --out {table}-quarantine.csv`",
        ]
    return total, "\n".join(lines)


def _cell(value: object, width: int = 160) -> str:
    text = "" if value is None else str(value)
    text = text if len(text) <= width else text[: width - 1] + "…"
    return "`" + text.replace("`", "'").replace("|", "\\|").replace("\n", " ") + "`" if text else ""
