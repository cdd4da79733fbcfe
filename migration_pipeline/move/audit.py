"""The audit trail in schema ``migration_audit``: quarantined rows and one record per table load.

In:  rejected source rows (key, column, reason, original values) and a table load's numbers.
Out: rows in ``migration_audit.rejected_rows`` / ``table_loads``, written inside the caller's
     transaction so they commit (or roll back) together with the table they describe; and the queries of
     them everyone shares: a table's latest load (:data:`LATEST_LOADS`, :func:`latest_load`), the keys and
     rowids a load quarantined, what a proof compares against (:func:`proof_baseline`).
Fails: psycopg errors propagate; :func:`raw_row_json` never fails: every SQLite value, including BLOBs,
     invalid UTF-8 and text holding NUL (which jsonb cannot store), is encoded losslessly.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from .convert import InvalidText


@dataclass(frozen=True)
class Rejection:
    rowid: int
    source_key: str
    column: str | None
    reason: str  # for a person: what is wrong with which value
    kind: str  # its short category, for counting ("tweet_data: invalid JSON", "user_id: orphan")


def _raw_value(value: object) -> object:
    if isinstance(value, InvalidText):
        return {"$base64": base64.b64encode(value).decode(), "$storage": "text (invalid UTF-8)"}
    if isinstance(value, bytes):
        return {"$base64": base64.b64encode(value).decode(), "$storage": "blob"}
    if isinstance(value, str) and "\x00" in value:
        return {"$base64": base64.b64encode(value.encode()).decode(), "$storage": "text (contains NUL)"}
    if isinstance(value, float) and _not_plain_json(value):
        return {"$float": repr(value)}
    return value


def _not_plain_json(value: float) -> bool:
    """A REAL that JSON cannot hold (inf, nan), or whose storage class jsonb would lose: it writes 1e+16
    as the integer 10000000000000000 and -0.0 as 0.0."""
    if not math.isfinite(value):
        return True
    return (value.is_integer() and "e" in repr(value)) or (value == 0 and math.copysign(1, value) < 0)


def raw_row_json(columns: Sequence[str], values: Sequence[object]) -> str:
    """The original row as JSON text for ``raw_row``: ``{column: value}``; values JSON cannot hold
    exactly become ``{"$base64": ..., "$storage": ...}`` or ``{"$float": "inf"}`` (also REALs jsonb would
    write as integers, e.g. ``{"$float": "1e+16"}``)."""
    return orjson.dumps({c: _raw_value(v) for c, v in zip(columns, values, strict=True)}).decode()


def original_value(value: object) -> object:
    """A ``raw_row`` value (see :func:`raw_row_json`) as SQLite held it."""
    if not isinstance(value, dict):
        return value
    if "$float" in value:
        return float(value["$float"])
    raw = base64.b64decode(value["$base64"])
    if value.get("$storage") == "blob":
        return raw
    try:
        return raw.decode("utf-8")  # TEXT holding a NUL
    except UnicodeDecodeError:
        return InvalidText(raw)  # TEXT that is not UTF-8: bound through CAST(? AS TEXT)


def int64_or_real(text: str) -> int | float:
    """A JSON integer of ``raw_row``: jsonb writes a large REAL (1e300) without exponent, while SQLite
    integers are 64-bit."""
    number = int(text)
    return number if -(2**63) <= number < 2**63 else float(text)


def raw_row_values(raw: str) -> dict[str, object]:
    """The original row of a ``raw_row`` JSON text, ``{column: value as SQLite held it}``: the inverse of
    :func:`raw_row_json`."""
    return {c: original_value(v) for c, v in json.loads(raw, parse_int=int64_or_real).items()}


def write_rejections(
    conn: psycopg.Connection, run_id: str, table: str, rows: Iterable[tuple[Rejection, str]]
) -> int:
    """COPY ``(rejection, raw_row_json)`` pairs into rejected_rows; returns how many were written."""
    written = 0
    with conn.cursor() as cur:
        cur.execute(
            "DELETE FROM migration_audit.rejected_rows WHERE run_id = %s AND table_name = %s", (run_id, table)
        )
        with cur.copy(
            "COPY migration_audit.rejected_rows"
            " (run_id, table_name, source_key, source_rowid, column_name, reason, kind, raw_row) FROM STDIN"
        ) as copy:
            for r, raw in rows:
                copy.write_row((run_id, table, r.source_key, r.rowid, r.column, r.reason, r.kind, raw))
                written += 1
    return written


def rejected_rowids(conn: psycopg.Connection, table: str, run_id: str | None) -> set[int]:
    """The snapshot rowids of the rows ``run_id`` quarantined from ``table`` (none without a run): the
    rows a check comparing the target with the snapshot must leave out, whatever their key."""
    rows = conn.execute(
        "SELECT source_rowid FROM migration_audit.rejected_rows WHERE run_id = %s AND table_name = %s",
        (run_id, table),
    )
    return {r[0] for r in rows}


def record_table_load(
    conn: psycopg.Connection, result, origin: dict, code_version: str, mode: str = "full"
) -> None:
    """The table_loads row of a load (``result``: a ``LoadResult``) with its provenance: ``origin`` as
    ``Snapshot.origin()`` gives it, the code version, and ``mode`` ('full' or 'delta'); and what it
    removed, with the operator's confirmation of a shrink beyond the guard's limit."""
    conn.execute(
        """
        INSERT INTO migration_audit.table_loads
            (run_id, table_name, source_rows, loaded_rows, rejected_rows, checksum, started_at, finished_at,
             mode, source_path, snapshot_sha256, snapshot_taken_at, code_version, removed_rows, shrink_confirmed)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (run_id, table_name) DO UPDATE SET
            source_rows = EXCLUDED.source_rows, loaded_rows = EXCLUDED.loaded_rows,
            rejected_rows = EXCLUDED.rejected_rows, checksum = EXCLUDED.checksum,
            started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at, mode = EXCLUDED.mode,
            source_path = EXCLUDED.source_path, snapshot_sha256 = EXCLUDED.snapshot_sha256,
            snapshot_taken_at = EXCLUDED.snapshot_taken_at, code_version = EXCLUDED.code_version,
            removed_rows = EXCLUDED.removed_rows, shrink_confirmed = EXCLUDED.shrink_confirmed
        """,
        (
            result.run_id,
            result.table,
            result.source_rows,
            result.loaded_rows,
            result.rejected_rows,
            result.checksum,
            result.started_at,
            result.finished_at,
            mode,
            origin["source_path"],
            origin["snapshot_sha256"],
            origin["taken_at"],
            code_version,
            result.removed_rows,
            None if result.shrink_confirmed is None else Jsonb(result.shrink_confirmed),
        ),
    )


# Each table's latest load: its table_loads row with the latest finish (the one definition of "latest").
LATEST_LOADS = sql.SQL(
    "SELECT DISTINCT ON (table_name) * FROM migration_audit.table_loads ORDER BY table_name, finished_at DESC"
)


def latest_load(conn: psycopg.Connection, table: str) -> dict | None:
    """The most recent table_loads record of ``table`` as a dict, or None."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            sql.SQL("SELECT * FROM ({}) l WHERE table_name = %s").format(LATEST_LOADS), (table,)
        ).fetchone()


def latest_loads(conn: psycopg.Connection) -> dict[str, dict]:
    """{table: its most recent table_loads record} of every table ever loaded."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return {r["table_name"]: r for r in cur.execute(LATEST_LOADS).fetchall()}


def latest_run_sql(table: str) -> sql.Composable:
    """SQL: the run id of ``table``'s latest load (NULL when it was never loaded)."""
    return sql.SQL("(SELECT run_id FROM ({}) l WHERE table_name = {})").format(
        LATEST_LOADS, sql.Literal(table)
    )


def quarantined_keys_sql(table: str, run_id: str | None = None) -> sql.Composable:
    """SQL: the keys (``source_key``, keys.py's rendering) of the rows that ``run_id``, by default the
    table's latest load, quarantined from ``table``."""
    run = latest_run_sql(table) if run_id is None else sql.Literal(run_id)
    return sql.SQL(
        "SELECT source_key FROM migration_audit.rejected_rows WHERE table_name = {} AND run_id = {}"
    ).format(sql.Literal(table), run)


def carry_rejections(
    conn: psycopg.Connection, table: str, previous_run: str, run_id: str, except_rowids: sql.Composable
) -> dict[str, int]:
    """Copy ``previous_run``'s rejections of ``table`` into ``run_id``, but for the rows whose rowid the
    query ``except_rowids`` returns (decided anew); returns the copied rows' counts by kind."""
    rows = conn.execute(
        sql.SQL(
            "WITH carried AS (INSERT INTO migration_audit.rejected_rows"
            " (run_id, table_name, source_key, source_rowid, column_name, reason, kind, raw_row)"
            " SELECT %s, table_name, source_key, source_rowid, column_name, reason, kind, raw_row"
            " FROM migration_audit.rejected_rows WHERE run_id = %s AND table_name = %s"
            " AND source_rowid NOT IN ({}) RETURNING kind)"
            " SELECT kind, count(*) FROM carried GROUP BY kind"
        ).format(except_rowids),
        (run_id, previous_run, table),
    ).fetchall()
    return dict(rows)


def run_recorded(conn: psycopg.Connection, run_id: str, mode: str) -> bool:
    """Whether ``run_id`` recorded a table_loads row of ``mode`` (it committed)."""
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM migration_audit.table_loads WHERE run_id = %s AND mode = %s)",
        (run_id, mode),
    ).fetchone()[0]


def proof_baseline(conn: psycopg.Connection, table: str) -> dict | None:
    """What ``table``'s content is proven against: its latest load (``table_loads``), or a baseline
    recorded from PostgreSQL since (``proof_baselines``: finalize, resuming the change log), whichever is
    newer. A dict with run_id, rows, checksum, at, why (None when the table was never loaded)."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            """
            SELECT * FROM (
                SELECT run_id, loaded_rows AS rows, checksum, finished_at AS at, 'load (' || mode || ')' AS why
                FROM migration_audit.table_loads WHERE table_name = %(t)s
                UNION ALL
                SELECT run_id, rows, checksum, recorded_at, why
                FROM migration_audit.proof_baselines WHERE table_name = %(t)s) b
            ORDER BY at DESC LIMIT 1
            """,
            {"t": table},
        ).fetchone()
