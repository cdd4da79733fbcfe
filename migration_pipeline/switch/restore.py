"""The rows the latest load quarantined, put back into the rollback export with their original values.

In:  a connection to the target (``migration_audit.rejected_rows``, whose ``raw_row`` holds each row as
     SQLite held it, audit.raw_row_json) and the SQLite file being written.
Out: :func:`quarantined_rows` (a table's quarantined rows, decoded, in SQLite's key order) and :func:`put_back`
     (inserts them after PostgreSQL's rows; a row that cannot go in, its key now PostgreSQL's, is skipped
     with why).
Fails: psycopg and sqlite3 errors other than a refused row propagate.
"""

from __future__ import annotations

import sqlite3

import psycopg

from ..catalog import TableSpec
from ..move import audit, keys
from ..move.convert import InvalidText
from ..move.source import quote


def _order(value: object) -> tuple:
    """SQLite's order of values (NULL, numbers, TEXT by bytes, BLOB), for the restored rows' keys."""
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value.encode("utf-8", "surrogatepass"))
    return (3 if not isinstance(value, InvalidText) else 2, bytes(value))


def _rowid(source_key: str | None) -> int:
    """The rowid a source_key names for a row without a usable key (``rowid:N``), else 0."""
    return keys.rowid_of(source_key) or 0


def quarantined_rows(conn: psycopg.Connection, spec: TableSpec, audited: bool) -> list[tuple[str, dict]]:
    """(source_key, original values) of the rows the table's latest load quarantined, in key order."""
    load = audit.latest_load(conn, spec.name) if audited else None
    if load is None:
        return []
    rows = conn.execute(
        "SELECT source_key, raw_row::text FROM migration_audit.rejected_rows WHERE run_id = %s AND table_name = %s",
        (load["run_id"], spec.name),
    ).fetchall()
    decoded = [(key, audit.raw_row_values(raw)) for key, raw in rows]
    return sorted(decoded, key=lambda r: (tuple(_order(r[1].get(c)) for c in spec.primary_key), _rowid(r[0])))


def put_back(db: sqlite3.Connection, spec: TableSpec, present: list[str], rows) -> tuple[int, list[str]]:
    """Insert quarantined rows after PostgreSQL's (so a reload keeps PostgreSQL's row on any tie); a row
    that cannot go in (its key is now PostgreSQL's) is skipped. Returns (rows restored, "key: why" of
    each row skipped)."""
    restored, skipped = 0, []
    for key, row in rows:
        missing = [c for c in row if c not in present]
        if missing:
            skipped.append(f"{key}: the exported table has no column {', '.join(missing)}")
            continue
        marks = ", ".join("CAST(? AS TEXT)" if isinstance(v, InvalidText) else "?" for v in row.values())
        try:
            db.execute(
                f"INSERT INTO {quote(spec.name)} ({', '.join(map(quote, row))}) VALUES ({marks})",
                list(row.values()),
            )
        except sqlite3.IntegrityError as err:
            skipped.append(f"{key}: kept PostgreSQL's row ({err})")
        else:
            restored += 1
    return restored, skipped
