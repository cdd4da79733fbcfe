"""Corrections of quarantined rows: recorded, applied to every view of the source, settled by a load.

In:  corrected raw rows for rows a table's latest load quarantined (correction_input.py reads them from
     a file or a corrected SQLite file), who corrects them and from what; a snapshot file; a target
     connection.
Out: :func:`record` writes them to ``migration_audit.quarantine_corrections`` (pending) with the row as
     the source held it; :func:`apply_to` rewrites a snapshot's rows to their corrected versions wherever
     the source still holds exactly the row that was corrected, so the correction lasts across new
     snapshots (``take_snapshot``'s ``amend``) until the app itself changes the row; :func:`in_force`
     tells a delta sync which of its changed rows are only a correction (the baseline holds it, the source
     the original). The table's next load then admits the rows through the same value rules and
     constraint checks as any row, or quarantines them with their new reason; :func:`settle` records
     which. :func:`revert` undoes corrections whose load failed.
Fails: :class:`CorrectionError` (nothing recorded) for a row the snapshot does not hold, or a corrected
     row the source's own schema refuses; psycopg and sqlite3 errors propagate.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson
import psycopg

from . import audit
from .convert import InvalidText, decode_text
from .source import Snapshot, quote, record_origin, snapshot_lock

TABLE = "migration_audit.quarantine_corrections"


class CorrectionError(ValueError):
    """A correction that cannot be applied; nothing was recorded."""


@dataclass(frozen=True)
class Correction:
    table: str
    source_key: str | None
    rowid: int
    original: str  # raw_row JSON text of the row as the source holds it
    corrected: str  # raw_row JSON text of the corrected row


def row_text(db: sqlite3.Connection, table: str, columns: Sequence[str], rowid: int) -> str | None:
    """The raw_row JSON text (audit.raw_row_json: how corrections store and compare rows) of the row
    ``rowid`` of ``table`` (an SQL name, schema-qualified if need be) in an open SQLite connection whose
    text factory is ``decode_text``; None when there is no such row."""
    row = db.execute(f"SELECT {', '.join(map(quote, columns))} FROM {table} WHERE rowid = ?", (rowid,))
    row = row.fetchone()
    return None if row is None else audit.raw_row_json(columns, row)


def corrected_text(columns: Sequence[str], original: str, changes: dict) -> str:
    """The original row with ``changes`` (raw_row values, in the export's encoding) applied, as text."""
    unknown = sorted(set(changes) - set(columns))
    if unknown:
        raise CorrectionError(f"no column {', '.join(unknown)} in the source table")
    row = orjson.loads(original)
    row.update(changes)
    return audit.raw_row_json(columns, [audit.original_value(row[c]) for c in columns])


def active(conn: psycopg.Connection, tables: Sequence[str] | None = None) -> list[Correction]:
    """The correction in force of each corrected row (the latest, unless its load failed)."""
    if conn.execute(f"SELECT to_regclass('{TABLE}')").fetchone()[0] is None:
        return []  # a target no load has prepared yet
    rows = conn.execute(
        f"SELECT DISTINCT ON (table_name, source_rowid) table_name, source_key, source_rowid, original_row,"
        f" corrected_row FROM {TABLE} WHERE state <> 'failed' AND (%s::text[] IS NULL"
        " OR table_name = ANY(%s)) ORDER BY table_name, source_rowid, id DESC",
        (tables, tables),
    ).fetchall()
    return [Correction(*row) for row in rows]


def originals(
    conn: psycopg.Connection, snapshot: Snapshot, table: str, rowids: Sequence[int]
) -> dict[int, str]:
    """{rowid: the row as the source holds it} for rows of ``snapshot``: read from it, or, for a row a
    correction in force already rewrote there, that correction's original."""
    columns = snapshot.columns(table)
    rows = snapshot.rows_by_rowid(table, columns, list(rowids))
    held = {r[0]: audit.raw_row_json(columns, r[1:]) for r in rows}
    missing = sorted(set(rowids) - set(held))
    if missing:
        raise CorrectionError(f"{table}: the snapshot holds no row with rowid {', '.join(map(str, missing))}")
    for c in active(conn, [table]):
        if c.rowid in held and held[c.rowid] == c.corrected:
            held[c.rowid] = c.original
    return held


def _rewrite(db: sqlite3.Connection, table: str, rowid: int, frm: str, to: str) -> str:
    """Rewrite the row ``rowid`` of ``table`` from ``frm`` to ``to`` (raw_row texts) if it holds ``frm``:
    'rewritten'; 'already' when it holds ``to``; 'changed' when it holds neither (the app changed it)."""
    columns = [r[1] for r in db.execute(f"PRAGMA table_info({quote(table)})")]
    held = row_text(db, quote(table), columns, rowid)
    if held == to:
        return "already"
    if held != frm:
        return "changed"
    raw = orjson.loads(to)
    values = [audit.original_value(raw[c]) for c in columns]
    sets = ", ".join(
        f"{quote(c)} = CAST(? AS TEXT)" if isinstance(v, InvalidText) else f"{quote(c)} = ?"
        for c, v in zip(columns, values, strict=True)
    )
    params = [bytes(v) if isinstance(v, InvalidText) else v for v in values]
    try:
        db.execute(f"UPDATE {quote(table)} SET {sets} WHERE rowid = ?", [*params, rowid])
    except sqlite3.IntegrityError as err:
        raise CorrectionError(
            f"{table}: a corrected row (rowid {rowid}) breaks the source's own schema: {err}"
        ) from err
    return "rewritten"


def _rewrite_all(path: Path, moves: Sequence[tuple[str, int, str, str]], then=None) -> dict[str, int]:
    """Apply every ``(table, rowid, from, to)`` of ``moves`` to the SQLite file at ``path`` in one
    transaction, calling ``then()`` before it commits; counts per outcome of :func:`_rewrite`."""
    done = {"rewritten": 0, "already": 0, "changed": 0}
    if not moves and then is None:
        return done  # nothing to write: the file is left as it is
    db = sqlite3.connect(path, isolation_level=None)
    db.text_factory = decode_text
    try:
        db.execute("BEGIN IMMEDIATE")
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table, rowid, frm, to in moves:
            if table in tables:
                done[_rewrite(db, table, rowid, frm, to)] += 1
        if then is not None:
            then()
        db.execute("COMMIT")
    finally:
        db.close()
    return done


def apply_to(conn: psycopg.Connection, snapshot_path: Path) -> dict[str, int]:
    """Rewrite the corrected rows of a snapshot file nobody else reads yet (a new snapshot before it
    replaces the previous one); counts of rows 'rewritten', 'already' corrected, and 'changed' by the app
    since (whose correction then no longer applies)."""
    return _rewrite_all(snapshot_path, [(c.table, c.rowid, c.original, c.corrected) for c in active(conn)])


@contextmanager
def _baseline(snapshot_path: Path) -> Iterator[None]:
    """The snapshot the tables were loaded from, changed in place under its exclusive lock; its origin
    (source, identity, time taken) stays what it was."""
    with snapshot_lock(snapshot_path, exclusive=True):
        with Snapshot(snapshot_path, locked=False) as snap:
            origin = snap.origin()
        yield
        if origin["source_path"] and origin["taken_at"]:
            taken_at = datetime.fromisoformat(origin["taken_at"])
            record_origin(snapshot_path, Path(origin["source_path"]), origin["snapshot_sha256"], taken_at)


def record(
    conn: psycopg.Connection, snapshot_path: Path, corrections: Sequence[Correction], source: str, by: str
) -> list[int]:
    """Record ``corrections`` (pending) and rewrite their rows in the baseline snapshot, both or neither;
    returns their ids. A row corrected before goes from its previous correction to the new one."""
    before = {(c.table, c.rowid): c.corrected for c in active(conn, sorted({c.table for c in corrections}))}
    moves = [(c.table, c.rowid, before.get((c.table, c.rowid), c.original), c.corrected) for c in corrections]
    ids: list[int] = []

    def insert() -> None:
        with conn.transaction():
            for c in corrections:
                ids.append(
                    conn.execute(
                        f"INSERT INTO {TABLE} (table_name, source_key, source_rowid, original_row,"
                        " corrected_row, correction_from, corrected_by) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                        " RETURNING id",
                        (c.table, c.source_key, c.rowid, c.original, c.corrected, source, by),
                    ).fetchone()[0]
                )

    with _baseline(snapshot_path):
        done = _rewrite_all(snapshot_path, moves, then=insert)
    if done["changed"]:
        raise CorrectionError("the snapshot changed while the corrections were recorded: run the retry again")
    return ids


def revert(conn: psycopg.Connection, snapshot_path: Path, ids: Sequence[int], why: str) -> None:
    """The load of the corrections ``ids`` failed: mark them failed and put their rows in the baseline
    snapshot back as they were (the previous correction in force, or the source's row)."""
    failed = conn.execute(
        f"UPDATE {TABLE} SET state = 'failed', outcome = %s WHERE id = ANY(%s) AND state = 'pending'"
        " RETURNING table_name, source_rowid, original_row, corrected_row",
        (why, list(ids)),
    ).fetchall()
    still = {(c.table, c.rowid): c.corrected for c in active(conn, sorted({f[0] for f in failed}))}
    with _baseline(snapshot_path):
        _rewrite_all(snapshot_path, [(t, r, c, still.get((t, r), o)) for t, r, o, c in failed])


def in_force(conn: psycopg.Connection) -> dict[str, dict[int, tuple[str, str]]]:
    """{table: {rowid: (original, corrected)}} of the corrections in force: a delta sync that finds the
    source holding exactly the original where the baseline holds the correction sees no change there."""
    found: dict[str, dict[int, tuple[str, str]]] = {}
    for c in active(conn):
        found.setdefault(c.table, {})[c.rowid] = (c.original, c.corrected)
    return found


def settle(conn: psycopg.Connection, tables: Sequence[str]) -> list[dict]:
    """Record the outcome of the pending corrections of ``tables`` whose table was loaded since they were
    made: admitted, or quarantined again with the new reason; returns them (key, state, reason, run)."""
    settled = []
    with conn.transaction():
        for table in tables:
            load = audit.latest_load(conn, table)
            if load is None:
                continue
            pending = conn.execute(
                f"SELECT id, source_key, source_rowid FROM {TABLE} WHERE table_name = %s AND state = 'pending'"
                " AND corrected_at < %s ORDER BY id",
                (table, load["finished_at"]),
            ).fetchall()
            for id_, key, rowid in pending:
                reason = conn.execute(
                    "SELECT reason FROM migration_audit.rejected_rows WHERE table_name = %s AND run_id = %s"
                    " AND source_rowid = %s LIMIT 1",
                    (table, load["run_id"], rowid),
                ).fetchone()
                state = "admitted" if reason is None else "quarantined"
                outcome = None if reason is None else reason[0]
                conn.execute(
                    f"UPDATE {TABLE} SET state = %s, outcome = %s, run_id = %s WHERE id = %s",
                    (state, outcome, load["run_id"], id_),
                )
                settled.append(
                    {
                        "id": id_,
                        "table": table,
                        "source_key": key,
                        "state": state,
                        "reason": outcome,
                        "run_id": load["run_id"],
                    }
                )
    return settled


def history(conn: psycopg.Connection, tables: Sequence[str]) -> list[dict]:
    """Every correction of ``tables``, oldest first: the audit trail of re-admitted rows."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        if cur.execute(f"SELECT to_regclass('{TABLE}')").fetchone()["to_regclass"] is None:
            return []
        return cur.execute(
            f"SELECT id, table_name, source_key, source_rowid, correction_from, corrected_by, corrected_at,"
            f" state, outcome, run_id, original_row, corrected_row FROM {TABLE} WHERE table_name = ANY(%s)"
            " ORDER BY id",
            (list(tables),),
        ).fetchall()
