"""Where corrected rows come from: a file of corrected raw rows, or the same keys in a corrected SQLite file.

In:  the target (which rows each table's latest load quarantined), the baseline snapshot, the catalog,
     and either a CSV or JSON Lines file in ``quarantine export``'s format (``table_name``, ``source_key``,
     optionally ``source_rowid``, ``raw_row``: the row's values in the export's encoding; columns left out
     keep their value) or a corrected SQLite file (the app's, fixed by its team, or a copy).
Out: :class:`Corrections`: one :class:`~migration_pipeline.move.corrections.Correction` per quarantined
     row whose corrected version differs, the keys left as they were, and a description of the source
     for the audit trail (path and sha256).
Fails: :class:`~migration_pipeline.move.corrections.CorrectionError` for a file that cannot be read, a
     key no latest load quarantined, a key that names several quarantined rows without ``source_rowid``, a
     column the table lacks, or a key the corrected SQLite file does not hold.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import psycopg
from psycopg import sql

from ..catalog import Catalog
from .audit import latest_run_sql, raw_row_json
from .convert import decode_text
from .corrections import Correction, CorrectionError, corrected_text, originals
from .keys import rowid_of, source_key
from .source import Snapshot, quote
from .source_copy import file_sha256, read_consistently
from .stage import plan_columns


@dataclass
class Corrections:
    source: str  # what they came from, for the audit trail
    rows: list[Correction] = field(default_factory=list)
    unchanged: dict[str, int] = field(default_factory=dict)  # per table: rows given but not changed


def _quarantined(conn: psycopg.Connection, table: str) -> dict[int, str]:
    """{source rowid: source key} of the rows ``table``'s latest load left quarantined."""
    query = sql.SQL(
        "SELECT source_rowid, source_key FROM migration_audit.rejected_rows"
        " WHERE table_name = {} AND run_id = {} AND source_rowid IS NOT NULL"
    ).format(sql.Literal(table), latest_run_sql(table))
    return dict(conn.execute(query).fetchall())


def _rowid(table: str, key: str, given: object, quarantined: dict[int, str]) -> int:
    if given not in (None, ""):
        rowid = int(given)
        if quarantined.get(rowid) != key:
            raise CorrectionError(f"{table}: no quarantined row {key} at source rowid {rowid}")
        return rowid
    found = [r for r, k in quarantined.items() if k == key]
    if not found:
        raise CorrectionError(f"{table}: {key} is not among the rows the latest load quarantined")
    if len(found) > 1:
        raise CorrectionError(f"{table}: {key} names {len(found)} quarantined rows; give source_rowid")
    return found[0]


def _entries(path: Path) -> list[dict]:
    try:
        if path.suffix in (".jsonl", ".json", ".ndjson"):
            lines = path.read_text(encoding="utf-8").splitlines()
            return [json.loads(line) for line in lines if line.strip()]
        with path.open(newline="", encoding="utf-8") as handle:
            return [{**row, "raw_row": json.loads(row["raw_row"])} for row in csv.DictReader(handle)]
    except (OSError, ValueError, KeyError) as err:
        raise CorrectionError(f"cannot read corrections from {path}: {err}") from err


def from_file(conn: psycopg.Connection, snapshot: Snapshot, path: Path, tables: Sequence[str]) -> Corrections:
    """The corrections a file gives for quarantined rows of ``tables`` (every line's table must be one)."""
    out = Corrections(source=f"file {path.resolve()} (sha256 {file_sha256(path)})")
    by_table: dict[str, list[dict]] = {}
    for n, entry in enumerate(_entries(path), 1):
        table = entry.get("table_name") or (tables[0] if len(tables) == 1 else None)
        if table not in tables or not isinstance(entry.get("raw_row"), dict) or "source_key" not in entry:
            raise CorrectionError(
                f"{path}, row {n}: needs table_name (one of {', '.join(tables)}), source_key and raw_row"
            )
        by_table.setdefault(table, []).append(entry)
    for table, entries in by_table.items():
        quarantined = _quarantined(conn, table)
        rowids = [_rowid(table, e["source_key"], e.get("source_rowid"), quarantined) for e in entries]
        if len(set(rowids)) < len(rowids):
            raise CorrectionError(f"{path}: {table} has more than one correction of the same row")
        held = originals(conn, snapshot, table, rowids)
        columns = snapshot.columns(table)
        for entry, rowid in zip(entries, rowids, strict=True):
            corrected = corrected_text(columns, held[rowid], entry["raw_row"])
            _add(out, Correction(table, entry["source_key"], rowid, held[rowid], corrected))
    return out


def _add(out: Corrections, correction: Correction) -> None:
    if correction.corrected == correction.original:
        out.unchanged[correction.table] = out.unchanged.get(correction.table, 0) + 1
    else:
        out.rows.append(correction)


def from_sqlite(
    conn: psycopg.Connection,
    snapshot: Snapshot,
    catalog: Catalog,
    path: Path,
    tables: Sequence[str],
    keys: Sequence[str] = (),
) -> Corrections:
    """The rows of a corrected SQLite file with the keys of quarantined rows of ``tables`` (only ``keys``
    when given), found at the same rowid, or else by key."""
    out = Corrections(source=f"sqlite {Path(path).resolve()}")
    if not Path(path).is_file():
        raise CorrectionError(f"no SQLite file at {path}")
    for table in tables:
        wanted = {r: k for r, k in _quarantined(conn, table).items() if not keys or k in keys}
        if not wanted:
            continue
        held = originals(conn, snapshot, table, sorted(wanted))
        columns = snapshot.columns(table)
        spec = catalog.table(table)
        read, _ = plan_columns(snapshot, spec)
        picks = [columns.index(c) for c in read]
        found = read_consistently(
            Path(path),
            partial(_read, table=table, columns=columns, wanted=wanted, spec=spec, read=read, picks=picks),
        )
        lost = sorted(k for r, k in wanted.items() if r not in found)
        if lost:
            raise CorrectionError(f"{table}: the corrected file {path} holds no row {', '.join(lost[:10])}")
        for rowid, key in sorted(wanted.items()):
            _add(out, Correction(table, key, rowid, held[rowid], raw_row_json(columns, found[rowid])))
    return out


def _read(uri: str, table, columns, wanted: dict[int, str], spec, read, picks) -> dict[int, tuple]:
    """{quarantined rowid: the corrected file's row with its key}: the same rowid first, then by key."""
    db = sqlite3.connect(uri, uri=True, isolation_level=None)
    db.text_factory = decode_text
    try:
        db.execute("BEGIN")  # one read transaction: one state of a file that may be in use
        if [r[1] for r in db.execute(f"PRAGMA table_info({quote(table)})")] != list(columns):
            raise CorrectionError(f"{table}: the corrected file's columns differ from the source's")
        select = f"SELECT rowid, {', '.join(map(quote, columns))} FROM {quote(table)}"

        def key(row: tuple) -> str:
            return source_key(spec, read, (row[0], *(row[1 + i] for i in picks)))

        found = {}
        for rowid, wanted_key in wanted.items():
            row = db.execute(select + " WHERE rowid = ?", (rowid,)).fetchone()
            if row is not None and (key(row) == wanted_key or rowid_of(wanted_key) == rowid):
                found[rowid] = row[1:]
        by_key = {k: r for r, k in wanted.items() if r not in found and rowid_of(k) is None}
        if by_key:  # moved to another rowid (deleted and inserted again): one pass over the table
            for row in db.execute(select):
                rowid = by_key.pop(key(row), None)
                if rowid is not None:
                    found[rowid] = row[1:]
                if not by_key:
                    break
        return found
    finally:
        db.close()
