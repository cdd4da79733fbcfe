"""The change set: what the app changed in its SQLite file since the baseline snapshot, and reading it.

In:  the baseline snapshot (the file every table was last loaded or synced from) and a URI of the app's
     live SQLite file (never written).
Out: :func:`diff` writes the rows the app inserted, updated, replaced (``INSERT OR REPLACE``: a new rowid)
     or deleted since, found by merging both files on rowid inside SQLite and comparing every value and
     its storage class, into a change set file beside the baseline (:func:`changeset_path`): per table
     the new versions (``<table>``) and the rowids of the old ones (``_gone_<table>``), with the run's
     :func:`write_meta`. :class:`NewState` reads the source as synced (baseline plus change set), as
     quarantine reads a snapshot; :func:`advance_baseline` applies the change set to the baseline once
     PostgreSQL committed it.
Fails: :class:`DeltaError` when a table appeared, disappeared or changed columns (nothing is written).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from ..catalog import Catalog, TableSpec
from ..move.convert import decode_text
from ..move.corrections import row_text
from ..move.source import file_sha256, quote, record_origin

_BATCH = 5_000


class DeltaError(RuntimeError):
    """The target cannot be brought up to date by a delta; nothing was changed."""


def changeset_path(baseline: Path) -> Path:
    return baseline.with_name(baseline.name + ".delta.db")


def _gone(table: str) -> str:
    return quote("_gone_" + table)


def _ro(path: Path) -> str:
    return f"{path.resolve().as_uri()}?mode=ro&immutable=1"


def _columns(db: sqlite3.Connection, schema: str, table: str) -> tuple[str, ...]:
    return tuple(r[1] for r in db.execute(f"PRAGMA {schema}.table_info({quote(table)})"))


def _untyped(db: sqlite3.Connection, schema: str, table: str) -> set[str]:
    """Columns with BLOB ("none") affinity, by SQLite's rules for declared types: the only ones that can
    hold both 1 and 1.0, which ``IS`` compares equal (INTEGER/NUMERIC affinity stores 1.0 as 1, REAL
    stores 1 as 1.0, TEXT stores both as text)."""
    untyped = set()
    for _, name, declared, *_ in db.execute(f"PRAGMA {schema}.table_info({quote(table)})"):
        declared = (declared or "").upper()
        if "INT" in declared or any(t in declared for t in ("CHAR", "CLOB", "TEXT")):
            continue
        if "BLOB" in declared or not declared:
            untyped.add(name)
    return untyped


def _differs(columns: Sequence[str], untyped: set[str]) -> str:
    """SQL: the old row ``o`` and new row ``n`` differ in a value, compared byte for byte (BINARY, whatever
    the column's collation), or in its storage class where the value alone cannot tell."""
    values = [f"o.{quote(c)} IS NOT n.{quote(c)} COLLATE BINARY" for c in columns]
    classes = [f"typeof(o.{quote(c)}) <> typeof(n.{quote(c)})" for c in columns if c in untyped]
    return " OR ".join(values + classes)


def _tables(db: sqlite3.Connection, schema: str) -> set[str]:
    rows = db.execute(
        f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )
    return {r[0] for r in rows}


def diff(
    baseline: Path,
    source_uri: str,
    out: Path,
    catalog: Catalog,
    corrected: dict[str, dict[int, tuple[str, str]]] | None = None,
) -> dict[str, tuple[str, ...]]:
    """Write the change set of the source against the baseline into ``out``; returns the columns of each
    table present on both sides. ``corrected``: {table: {rowid: (original, corrected)}} of the operator's
    corrections in force (corrections.py): a row the baseline holds corrected and the source still holds
    as it was is no change. One connection, one read transaction on the source: the change set is
    the difference to one real state of it. (Reading halves on two connections at once is faster but
    sees two states, whose mix can hold a key twice, which no real state of the app's file can.)"""
    out.unlink(missing_ok=True)
    db = sqlite3.connect(_ro(baseline), uri=True, isolation_level=None)
    try:
        db.execute("ATTACH ? AS src", (source_uri,))
        db.execute("ATTACH ? AS cs", (str(out),))
        db.execute("BEGIN")
        present = {"main": _tables(db, "main"), "src": _tables(db, "src")}
        diffed: dict[str, tuple[str, ...]] = {}
        for spec in catalog.tables:
            t = spec.name
            if (t in present["main"]) != (t in present["src"]):
                raise DeltaError(
                    f"table {t} {'appeared in' if t in present['src'] else 'disappeared from'} the source "
                    "since the last load: run a full migration"
                )
            if t not in present["main"]:
                continue
            columns = _columns(db, "main", t)
            if _columns(db, "src", t) != columns:
                raise DeltaError(
                    f"the columns of source table {t} changed since the last load: run a full migration"
                )
            diffed[t] = columns
            q = quote(t)
            cols = ", ".join(quote(c) for c in columns)
            new_cols = ", ".join(f"n.{quote(c)}" for c in columns)
            changed = _differs(columns, _untyped(db, "src", t) | _untyped(db, "main", t))
            db.execute(f"CREATE TABLE cs.{q} (_rowid INTEGER PRIMARY KEY, {cols})")  # no types: kept as-is
            db.execute(
                f"INSERT INTO cs.{q} SELECT n.rowid, {new_cols} FROM src.{q} n LEFT JOIN main.{q} o"
                f" ON o.rowid = n.rowid WHERE o.rowid IS NULL OR {changed}"
            )
            db.execute(f"CREATE TABLE cs.{_gone(t)} (_rowid INTEGER PRIMARY KEY)")
            db.execute(  # rows deleted, or moved elsewhere by INSERT OR REPLACE
                f"INSERT INTO cs.{_gone(t)} SELECT o.rowid FROM main.{q} o"
                f" WHERE NOT EXISTS (SELECT 1 FROM src.{q} n WHERE n.rowid = o.rowid)"
            )
            db.execute(  # the old versions of changed rows
                f"INSERT OR IGNORE INTO cs.{_gone(t)} SELECT c._rowid FROM cs.{q} c"
                f" WHERE EXISTS (SELECT 1 FROM main.{q} o WHERE o.rowid = c._rowid)"
            )
            _keep_corrections(db, t, columns, (corrected or {}).get(t, {}))
        db.execute("COMMIT")
        return diffed
    except BaseException:
        db.close()
        out.unlink(missing_ok=True)
        raise
    finally:
        db.close()


def _keep_corrections(db: sqlite3.Connection, t: str, columns, corrected: dict[int, tuple[str, str]]) -> None:
    """Drop from the change set the rows that differ only by a correction in force (the change set's
    ``_rowid`` is its tables' rowid)."""
    db.text_factory = decode_text
    try:
        for rowid, (original, correction) in corrected.items():
            new = row_text(db, f"cs.{quote(t)}", columns, rowid)
            if new == original and row_text(db, f"main.{quote(t)}", columns, rowid) == correction:
                db.execute(f"DELETE FROM cs.{quote(t)} WHERE _rowid = ?", (rowid,))
                db.execute(f"DELETE FROM cs.{_gone(t)} WHERE _rowid = ?", (rowid,))
    finally:
        db.text_factory = str


def write_meta(out: Path, run_id: str, source: Path, taken_at: datetime) -> str:
    db = sqlite3.connect(out)
    with db:
        db.execute("CREATE TABLE _meta (key TEXT PRIMARY KEY, value TEXT)")
        db.executemany(
            "INSERT INTO _meta VALUES (?, ?)",
            [("run_id", run_id), ("source_path", str(source.resolve())), ("taken_at", taken_at.isoformat())],
        )
    db.execute("PRAGMA journal_mode = DELETE")
    db.close()
    return file_sha256(out)


def read_meta(path: Path) -> dict[str, str]:
    db = sqlite3.connect(_ro(path), uri=True)
    try:
        return dict(db.execute("SELECT key, value FROM _meta"))
    finally:
        db.close()


class NewState:
    """The source as synced, read from the baseline plus the change set (both immutable here): a table's
    rows are the baseline's minus the old versions (``cs._gone_<table>``) plus the change set's new
    versions (``cs.<table>``). Every read goes to the two parts separately, so lookups by rowid or key
    use the baseline's b-trees instead of scanning. Offers what quarantine needs of a snapshot."""

    def __init__(self, baseline: Path, changeset: Path, tables: dict[str, tuple[str, ...]]):
        self._db = sqlite3.connect(_ro(baseline), uri=True)
        self._db.text_factory = decode_text  # invalid UTF-8 kept as InvalidText, as the load does
        self._db.execute("ATTACH ? AS cs", (_ro(changeset),))
        self.tables = tables

    def close(self) -> None:
        self._db.close()

    def _rows(self, table: str, columns: Sequence[str], where: str) -> str:
        """SELECT (_rowid, *columns) of the new state's rows satisfying ``where`` (on ``_rowid`` and the
        columns), in rowid order. Both parts are simple enough for SQLite to flatten, so a condition on
        ``_rowid`` or an indexed key is a lookup."""
        cols = "".join(f", {quote(c)}" for c in columns)
        t = quote(table)
        return (
            f"SELECT * FROM (SELECT rowid AS _rowid{cols} FROM main.{t}"
            f" WHERE rowid NOT IN (SELECT _rowid FROM cs.{_gone(table)})) WHERE {where}"
            f" UNION ALL SELECT _rowid{cols} FROM cs.{t} WHERE {where} ORDER BY 1"
        )

    def count(self, table: str) -> int:
        t = quote(table)
        return self._db.execute(
            f"SELECT (SELECT count(*) FROM main.{t}) - (SELECT count(*) FROM cs.{_gone(table)})"
            f" + (SELECT count(*) FROM cs.{t})"
        ).fetchone()[0]

    def changed(self, table: str) -> tuple[int, int]:
        added = self._db.execute(f"SELECT count(*) FROM cs.{quote(table)}").fetchone()[0]
        removed = self._db.execute(f"SELECT count(*) FROM cs.{_gone(table)}").fetchone()[0]
        return added, removed

    def rows_by_rowid(self, table: str, columns: Sequence[str], rowids: Sequence[int]) -> list[tuple]:
        found = []
        for start in range(0, len(rowids), 500):
            chunk = list(rowids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            found.extend(self._db.execute(self._rows(table, columns, f"_rowid IN ({marks})"), chunk + chunk))
        return found

    def old_keys(self, table: str, key: Sequence[str]) -> list[tuple]:
        """The key values of the baseline rows gone or changed (their old versions)."""
        cols = ", ".join(quote(c) for c in key)
        return self._db.execute(
            f"SELECT {cols} FROM main.{quote(table)} WHERE rowid IN (SELECT _rowid FROM cs.{_gone(table)})"
        ).fetchall()

    def candidates(
        self, spec: TableSpec, columns: Sequence[str], quarantined: Sequence[int], keys: Sequence[tuple]
    ) -> int:
        """Fill ``temp.cand`` with the rowids to convert again; returns how many. Those are the changed
        rows, the rows ``quarantined`` before (whose reason may be gone), the rows holding ``keys`` (whose
        parent row left), and every row sharing a key or a unique value with one of them or with an old
        version (so "the first row by rowid keeps a key" holds as in a full load)."""
        db, t = self._db, quote(spec.name)
        db.execute("DROP TABLE IF EXISTS temp.cand")
        db.execute("CREATE TEMP TABLE cand (_rowid INTEGER PRIMARY KEY)")
        db.execute(f"INSERT INTO temp.cand SELECT _rowid FROM cs.{t}")
        db.executemany(
            f"INSERT OR IGNORE INTO temp.cand SELECT _rowid FROM ({self._rows(spec.name, (), '_rowid = ?')})",
            [(r, r) for r in quarantined],
        )
        pk = [c for c in spec.primary_key if c in columns]
        if keys and len(pk) == len(spec.primary_key):
            where = " AND ".join(f"{quote(c)} IS ?" for c in pk)
            db.executemany(
                f"INSERT OR IGNORE INTO temp.cand SELECT _rowid FROM ({self._rows(spec.name, pk, where)})",
                [k + k for k in keys],
            )
        unique_keys = [k for k in (spec.primary_key, *spec.unique) if set(k) <= set(columns)]
        size = -1
        while size != (size := db.execute("SELECT count(*) FROM temp.cand").fetchone()[0]):
            for key in unique_keys:  # every row sharing a key value with a candidate or an old version
                cols = ", ".join(quote(c) for c in key)
                db.execute("DROP TABLE IF EXISTS temp.shared")
                db.execute(
                    f"CREATE TEMP TABLE shared AS SELECT {cols} FROM ({self._rows(spec.name, key, '_rowid IN (SELECT _rowid FROM temp.cand)')})"
                    f" UNION SELECT {cols} FROM main.{t} WHERE rowid IN (SELECT _rowid FROM cs.{_gone(spec.name)})"
                )
                where = f"({cols}) IN (SELECT {cols} FROM temp.shared)"
                db.execute(
                    f"INSERT OR IGNORE INTO temp.cand SELECT _rowid FROM ({self._rows(spec.name, key, where)})"
                )
        return size

    def candidate_keys(self, spec: TableSpec) -> list[tuple]:
        where = "_rowid IN (SELECT _rowid FROM temp.cand)"
        query = self._rows(spec.name, spec.primary_key, where)
        return [row[1:] for row in self._db.execute(query)]

    def touched_rowids(self, table: str) -> list[tuple[int]]:
        """Rowids whose quarantine verdict this sync decides anew: candidates and old versions."""
        return self._db.execute(
            f"SELECT _rowid FROM temp.cand UNION SELECT _rowid FROM cs.{_gone(table)}"
        ).fetchall()

    def candidate_batches(self, table: str, columns: Sequence[str]) -> Iterator[list[tuple]]:
        cursor = self._db.execute(self._rows(table, columns, "_rowid IN (SELECT _rowid FROM temp.cand)"))
        while batch := cursor.fetchmany(_BATCH):
            yield batch


def advance_baseline(baseline: Path, changeset: Path) -> None:
    """Apply the change set to the baseline (idempotent: replaying it gives the same file content) and
    record the change set as what the baseline now holds; then drop the change set."""
    meta = read_meta(changeset)
    identity = file_sha256(changeset)
    db = sqlite3.connect(baseline)
    try:
        db.execute("ATTACH ? AS cs", (_ro(changeset),))
        tables = _tables(db, "cs") - {"_meta"}
        with db:
            for t in sorted(x for x in tables if not x.startswith("_gone_")):
                cols = ", ".join(quote(c) for c in _columns(db, "cs", t)[1:])
                db.execute(f"DELETE FROM main.{quote(t)} WHERE rowid IN (SELECT _rowid FROM cs.{_gone(t)})")
                db.execute(
                    f"INSERT OR REPLACE INTO main.{quote(t)} (rowid, {cols}) SELECT _rowid, {cols} FROM cs.{quote(t)}"
                )
    finally:
        db.close()
    record_origin(baseline, Path(meta["source_path"]), identity, datetime.fromisoformat(meta["taken_at"]))
    changeset.unlink()
