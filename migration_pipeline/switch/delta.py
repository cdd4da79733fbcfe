"""Delta sync: bring the target up to date with what the app changed in SQLite since the last load.

In:  the baseline snapshot (the file every table was last loaded or synced from: its origin identity
     equals each table's latest ``table_loads.snapshot_sha256``), the app's live SQLite file (never
     written), and a target connection.
Out: :func:`sync` finds the rows the app inserted, updated, replaced (``INSERT OR REPLACE``: a new rowid)
     or deleted since, by merging both files on rowid inside SQLite and comparing every value and its
     storage class; it writes them to a change set file beside the baseline, then applies them to
     PostgreSQL in ONE transaction, table by table in foreign-key order, with the load's converters,
     quarantine and audit ('delta' rows in ``table_loads``, the checksum carried forward exactly, the
     rejected rows of the run). Converted again are only: the changed rows, the rows that share a key or
     a unique value with them (so "the first row by rowid keeps a key" holds as in a full load), rows
     whose parent row left, and the rows quarantined before (whose reason may be gone). After the commit
     the change set is applied to the baseline, which then equals the source as synced, so the checks
     compare against it. A :class:`SyncResult` has the counts and the time of each phase.
Fails: :class:`DeltaError` before anything changed when a delta cannot be exact: the baseline is not what
     the tables were last loaded from, or was taken from another file than ``source`` (a wrong source), the
     app wrote to PostgreSQL since (the change log is not empty), a table appeared, disappeared or changed
     columns. Any error while applying rolls the whole sync back.
     A sync interrupted after its commit is completed by the next one (:func:`recover`); one interrupted
     before it leaves PostgreSQL and the baseline as they were.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

from ..catalog import Catalog, TableSpec
from ..connect.target import apply_schema
from ..move import audit, changes, checksums, phase, quarantine
from ..move.code_version import code_version
from ..move.convert import Rejected, converter_for, decode_text
from ..move.load import LoadResult, set_sequences
from ..move.source import Snapshot, file_sha256, quote, read_consistently, record_origin, snapshot_lock
from ..move.stage import source_key, stage_rows

MODE = "delta"
_BATCH = 5_000


class DeltaError(RuntimeError):
    """The target cannot be brought up to date by a delta; nothing was changed."""


@dataclass
class TableDelta:
    table: str
    added: int = 0  # source rows new or changed since the baseline (their new versions)
    removed: int = 0  # source rows gone or changed (their old versions)
    restaged: int = 0  # rows converted again: changed, sharing a key, orphaned, or quarantined before
    inserted: int = 0
    updated: int = 0
    deleted: int = 0  # target rows removed: gone from the source, or now quarantined
    result: LoadResult | None = None


@dataclass
class SyncResult:
    run_id: str
    identity: str  # sha256 of the change set: table_loads.snapshot_sha256 of this run
    tables: dict[str, TableDelta] = field(default_factory=dict)
    diff_seconds: float = 0.0
    apply_seconds: float = 0.0
    baseline_seconds: float = 0.0

    @property
    def changed_rows(self) -> int:
        return sum(t.added + t.removed for t in self.tables.values())

    @property
    def seconds(self) -> float:
        return self.diff_seconds + self.apply_seconds + self.baseline_seconds


def changeset_path(baseline: Path) -> Path:
    return baseline.with_name(baseline.name + ".delta.db")


def _gone(table: str) -> str:
    return quote("_gone_" + table)


def _ro(path: Path) -> str:
    return f"{path.resolve().as_uri()}?mode=ro&immutable=1"


# --- the change set -------------------------------------------------------------------------------


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


def _diff(baseline: Path, source_uri: str, out: Path, catalog: Catalog) -> dict[str, tuple[str, ...]]:
    """Write the change set of the source against the baseline into ``out``; returns the columns of each
    table present on both sides. One connection, one read transaction on the source: the change set is
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
        db.execute("COMMIT")
        return diffed
    except BaseException:
        db.close()
        out.unlink(missing_ok=True)
        raise
    finally:
        db.close()


def _write_meta(out: Path, run_id: str, source: Path, taken_at: datetime) -> str:
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


def _meta(path: Path) -> dict[str, str]:
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
        """Fill ``temp.cand`` with the rowids to convert again (see module doc); returns how many."""
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


# --- applying it to PostgreSQL ----------------------------------------------------------------------


def _pk(spec: TableSpec) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, spec.primary_key))


def _latest_loads(conn: psycopg.Connection) -> dict[str, dict]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        rows = cur.execute(
            "SELECT DISTINCT ON (table_name) * FROM migration_audit.table_loads"
            " ORDER BY table_name, finished_at DESC"
        ).fetchall()
    return {r["table_name"]: r for r in rows}


def _affected(table: str) -> sql.Identifier:
    return sql.Identifier(f"_affected_{table}")


def refuse_if_written(conn: psycopg.Connection) -> None:
    """A sync (or load) from SQLite would overwrite what was written to PostgreSQL since the last load:
    refuse once the app writes there, or while the change log holds anything, saying what (the same
    explanation the checks give)."""
    now = phase.current(conn)
    if now.name != phase.MIGRATED:
        raise DeltaError(
            f"the database is {now.describe()}: syncing from SQLite now would overwrite the app's writes"
        )
    lines = [
        line
        for table in changes.size(conn)
        for line in changes.explain(table, changes.unexplained(conn, table), now)
    ]
    if lines:
        raise DeltaError(
            "PostgreSQL has been written to since the last load, and a sync from SQLite would overwrite it: "
            + "; ".join(lines)
        )


def _recheck(conn, catalog: Catalog, spec: TableSpec, run_id: str) -> list[int]:
    """Rowids quarantined by ``run_id`` for a foreign key whose parent key this sync touched (the parent
    may now exist, or be quarantined, or be gone): their verdict is decided again. Every other verdict
    holds while the row is unchanged: conversion and CHECK rejections depend on the row alone, and
    duplicate keys are decided again with every row sharing a key with a changed one."""
    rowids: list[int] = []
    for fk in spec.foreign_keys:
        kinds = [f"{fk.columns[0]}: {quarantine.ORPHAN}", f"{fk.columns[0]}: {quarantine.PARENT_QUARANTINED}"]
        where = sql.SQL("r.run_id = %s AND r.table_name = %s AND r.kind = ANY(%s)")
        if len(fk.columns) == 1 and fk.parent_columns == catalog.table(fk.parent).primary_key:
            where = sql.SQL("{} AND r.raw_row->>{} IN (SELECT {}::text FROM {})").format(
                where, sql.Literal(fk.columns[0]), sql.Identifier(fk.parent_columns[0]), _affected(fk.parent)
            )
        query = sql.SQL("SELECT r.source_rowid FROM migration_audit.rejected_rows r WHERE {}").format(where)
        rowids += [r[0] for r in conn.execute(query, (run_id, spec.name, kinds))]
    return rowids


def _carry_forward(conn, spec: TableSpec, previous_run: str, run_id: str) -> dict[str, int]:
    """Copy the previous run's rejections of rows this sync did not touch into this run; their counts."""
    rows = conn.execute(
        "WITH carried AS (INSERT INTO migration_audit.rejected_rows"
        " (run_id, table_name, source_key, source_rowid, column_name, reason, kind, raw_row)"
        " SELECT %s, table_name, source_key, source_rowid, column_name, reason, kind, raw_row"
        " FROM migration_audit.rejected_rows WHERE run_id = %s AND table_name = %s"
        " AND source_rowid NOT IN (SELECT rowid FROM _touched) RETURNING kind)"
        " SELECT kind, count(*) FROM carried GROUP BY kind",
        (run_id, previous_run, spec.name),
    ).fetchall()
    return dict(rows)


def _copy_rows(conn, statement: sql.Composable, rows: Sequence[tuple]) -> None:
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _check_preconditions(conn, catalog: Catalog, identity: str) -> dict[str, dict]:
    loads = _latest_loads(conn)
    missing = [t for t in catalog.names if t not in loads]
    if missing:
        raise DeltaError(f"never loaded: {', '.join(missing)}; run a full migration first")
    stale = [t for t in catalog.names if loads[t]["snapshot_sha256"] != identity]
    if stale:
        raise DeltaError(
            f"the baseline snapshot is not what {', '.join(stale)} were last loaded from (another snapshot "
            "was taken since, or a table was loaded from elsewhere): run a full migration"
        )
    untracked = conn.execute(
        "SELECT DISTINCT r.table_name FROM migration_audit.rejected_rows r JOIN"
        " (SELECT DISTINCT ON (table_name) table_name, run_id FROM migration_audit.table_loads"
        "  ORDER BY table_name, finished_at DESC) l USING (table_name, run_id) WHERE r.source_rowid IS NULL"
    ).fetchall()
    if untracked:
        raise DeltaError(
            f"the last load of {', '.join(r[0] for r in untracked)} predates rowid tracking of quarantined "
            "rows: run a full migration"
        )
    refuse_if_written(conn)
    return loads


def _cascade(
    conn,
    catalog: Catalog,
    table: str,
    doomed: sql.Composable,
    pending: dict,
    removed: Counter,
    hashes: Counter,
) -> None:
    """Take out of the referencing tables the rows whose parent rows ``doomed`` (a query of the
    referenced key values) leave; they are converted again when their table's turn comes (and end up
    quarantined as orphans, as in a full load)."""

    def remove(child: TableSpec, condition: sql.Composable) -> None:
        rows = conn.execute(
            sql.SQL("DELETE FROM {t} t WHERE {w} RETURNING {pk}, {h}").format(
                t=sql.Identifier(child.name), w=condition, pk=_pk(child),
                h=changes.row_hash(pending["columns"][child.name], "t"),
            )
        ).fetchall()  # fmt: skip
        for *key, row_hash in rows:
            pending["keys"].setdefault(child.name, []).append(tuple(key))
            removed[child.name] += 1
            hashes[child.name] += row_hash

    quarantine.cascade(catalog, table, doomed, remove)


def _apply_table(
    conn, catalog: Catalog, spec: TableSpec, state: NewState, run_id: str, previous: dict, pending: dict,
    removed: Counter, hashes: Counter,
) -> TableDelta:  # fmt: skip
    t = sql.Identifier(spec.name)
    delta = TableDelta(spec.name)
    result = LoadResult(table=spec.name, run_id=run_id, source_present=spec.name in state.tables)
    result.started_at = datetime.now(UTC)
    columns = state.tables.get(spec.name, ())
    pk = _pk(spec)
    before = checksums.Checksum.parse(previous["checksum"]) if previous["checksum"] else None
    if before is None or before.columns != tuple(columns):
        raise DeltaError(f"{spec.name}: its last load covered other columns: run a full migration")
    carried: dict[str, int] = {}
    # every key whose target row may change: the candidates' and the old versions' (kept until commit:
    # the referencing tables re-check their orphans against it)
    affected_table = _affected(spec.name)
    conn.execute(
        sql.SQL("CREATE TEMP TABLE {a} ON COMMIT DROP AS SELECT {pk} FROM {t} WITH NO DATA").format(
            a=affected_table, pk=pk, t=t
        )
    )
    conn.execute("CREATE TEMP TABLE _touched (rowid bigint) ON COMMIT DROP")
    recheck, keys_of_orphans = [], pending["keys"].pop(spec.name, [])
    if columns:
        delta.added, delta.removed = state.changed(spec.name)
        recheck = _recheck(conn, catalog, spec, previous["run_id"])
    changed = delta.added or delta.removed or recheck or keys_of_orphans
    with quarantine.Spool(columns) as spool:
        if changed:
            delta.restaged = state.candidates(spec, columns, recheck, keys_of_orphans)
            keys = _converted_keys(
                spec, state.candidate_keys(spec) + state.old_keys(spec.name, spec.primary_key)
            )
            _copy_rows(conn, sql.SQL("COPY {} ({}) FROM STDIN").format(affected_table, pk), keys)
            _copy_rows(conn, sql.SQL("COPY _touched FROM STDIN"), state.touched_rowids(spec.name))
            stage = quarantine.create_stage(conn, spec, columns)
            batches = lambda: state.candidate_batches(spec.name, columns)  # noqa: E731
            stage_rows(conn, batches, spec, columns, stage, spool, None)
            quarantine.constraint_rejections(
                conn, catalog, spec, columns, stage, spool, state, lambda row: source_key(spec, columns, row)
            )
            for temp in (stage, affected_table):  # statistics, so joins with the big table use its keys
                conn.execute(sql.SQL("ANALYZE {}").format(temp))
            affected = sql.SQL("({pk}) IN (SELECT {pk} FROM {a})").format(pk=pk, a=affected_table)
            old_rows = checksums.checksum(conn, t, columns, affected)  # the rows about to change
            doomed = sql.SQL("SELECT {pk} FROM {a} a WHERE ({pk}) NOT IN (SELECT {pk} FROM {s})").format(
                pk=pk, a=affected_table, s=stage
            )
            _cascade(conn, catalog, spec.name, doomed, pending, removed, hashes)
            delta.deleted = conn.execute(
                sql.SQL("DELETE FROM {t} WHERE ({pk}) IN ({d})").format(t=t, pk=pk, d=doomed)
            ).rowcount
            others = [c for c in columns if c not in spec.primary_key]
            on = sql.SQL(" AND ").join(
                sql.SQL("{t}.{c} = s.{c}").format(t=t, c=sql.Identifier(c)) for c in spec.primary_key
            )
            quarantine.release_unique_values(conn, spec, columns, stage)
            if others:
                delta.updated = conn.execute(
                    sql.SQL(
                        "UPDATE {t} SET {set} FROM {s} s WHERE {on} AND ({old}) IS DISTINCT FROM ({new})"
                    ).format(
                        t=t,
                        set=sql.SQL(", ").join(
                            sql.SQL("{c} = s.{c}").format(c=sql.Identifier(c)) for c in others
                        ),
                        s=stage,
                        on=on,
                        old=sql.SQL(", ").join(sql.SQL("{}.{}").format(t, sql.Identifier(c)) for c in others),
                        new=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in others),
                    )
                ).rowcount
            cols = sql.SQL(", ").join(map(sql.Identifier, columns))
            delta.inserted = conn.execute(
                sql.SQL(
                    "INSERT INTO {t} ({cols}) SELECT {cols} FROM {s} s WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE {on})"
                ).format(t=t, cols=cols, s=stage, on=on)
            ).rowcount
            # afterwards the rows with those keys are exactly the staged ones (the load's checksum is also
            # taken on its stage: the same row text)
            new_rows = checksums.checksum(conn, stage, columns)
            conn.execute(sql.SQL("DROP TABLE {}, _rejects").format(stage))
            rows = before.rows - old_rows.rows - removed[spec.name] + new_rows.rows
            total = before.total - old_rows.total - hashes[spec.name] + new_rows.total
            result.checksum = str(checksums.Checksum(rows, total, tuple(columns)))
        else:  # nothing changed in the table or its parents: its content and verdicts stand
            result.checksum = previous["checksum"]
        result.source_rows = state.count(spec.name) if columns else 0
        result.rejected_rows = audit.write_rejections(conn, run_id, spec.name, spool.drain())
        carried = _carry_forward(conn, spec, previous["run_id"], run_id)
        conn.execute("DROP TABLE _touched")
        result.rejected_rows += sum(carried.values())
        result.rejected_by_reason = dict((Counter(spool.kinds) + Counter(carried)).most_common())
    # the table's rows, from the statements' own row counts (a count(*) would read all of a big table);
    # two independent tallies, from the rows' keys and from the statements, must agree
    result.loaded_rows = previous["loaded_rows"] - delta.deleted - removed[spec.name] + delta.inserted
    if result.source_rows != result.loaded_rows + result.rejected_rows:
        raise DeltaError(
            f"{spec.name}: {result.source_rows} source rows but {result.loaded_rows} in the table + "
            f"{result.rejected_rows} quarantined after the delta ({delta.added} rows new or changed, "
            f"{delta.removed} gone or changed, {delta.restaged} converted again, {delta.inserted} inserted, "
            f"{delta.deleted} deleted, {removed[spec.name]} removed under a parent, {sum(carried.values())} "
            f"verdicts carried); rolled back (run a full migration)"
        )
    if checksums.Checksum.parse(result.checksum).rows != result.loaded_rows:
        raise DeltaError(f"{spec.name}: the carried checksum does not match the table; rolled back")
    set_sequences(conn, spec, run_id)
    result.finished_at = datetime.now(UTC)
    delta.result = result
    return delta


def _converted_keys(spec: TableSpec, raw: list[tuple]) -> list[tuple]:
    converters = [converter_for(spec.column(c).kind, spec.column(c).max_length) for c in spec.primary_key]
    keys = []
    for row in raw:
        try:
            keys.append(tuple(convert(v) for convert, v in zip(converters, row, strict=True)))
        except Rejected:
            continue  # a key that never loaded
    return keys


# --- the whole sync --------------------------------------------------------------------------------


def _advance_baseline(baseline: Path, changeset: Path) -> None:
    """Apply the change set to the baseline (idempotent: replaying it gives the same file content) and
    record the change set as what the baseline now holds; then drop the change set."""
    meta = _meta(changeset)
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


def recover(conn: psycopg.Connection, baseline: Path) -> str | None:
    """Finish or discard a sync interrupted between its change set and the baseline's update; returns
    what was done ('completed <run>' / 'discarded <run>') or None."""
    changeset = changeset_path(baseline)
    if not changeset.exists():
        return None
    try:
        run_id = _meta(changeset).get("run_id")
    except sqlite3.DatabaseError:
        run_id = None  # written only partly: the sync never reached PostgreSQL
    committed = (
        run_id is not None
        and conn.execute(
            "SELECT EXISTS (SELECT 1 FROM migration_audit.table_loads WHERE run_id = %s AND mode = %s)",
            (run_id, MODE),
        ).fetchone()[0]
    )
    if committed:
        _advance_baseline(baseline, changeset)
        return f"completed {run_id}"
    changeset.unlink()
    return f"discarded {run_id}"


def sync(conn: psycopg.Connection, catalog: Catalog, source: Path, baseline: Path, run_id: str) -> SyncResult:
    """Bring every table up to date with ``source`` since ``baseline`` (see module doc)."""
    source = Path(source)
    if not source.is_file():
        raise DeltaError(f"SQLite source {source} does not exist or is not a file")
    if not baseline.is_file():
        raise DeltaError(f"no baseline snapshot at {baseline}: run a full migration first")
    apply_schema(conn, catalog)
    with snapshot_lock(baseline, exclusive=True):  # waits for loads and checks reading it
        return _sync_locked(conn, catalog, source, baseline, run_id)


def _sync_locked(conn, catalog: Catalog, source: Path, baseline: Path, run_id: str) -> SyncResult:
    recover(conn, baseline)
    with Snapshot(baseline, locked=False) as snap:  # this process holds the lock exclusively
        taken = snap.origin()
    identity, taken_from = taken["snapshot_sha256"], taken["source_path"]
    if taken_from and Path(taken_from) != source.resolve():  # a wrong source: the diff would be of two files
        raise DeltaError(
            f"the tables were loaded from {taken_from}, not from {source}: a sync applies what changed in one "
            "file; check SQLITE_PATH, or run a full migration from this file (whose shrink guard checks it)"
        )
    loads = _check_preconditions(conn, catalog, identity)
    changeset = changeset_path(baseline)
    started = time.perf_counter()
    taken_at = datetime.now(UTC)
    tables = read_consistently(source, lambda uri: _diff(baseline, uri, changeset, catalog))
    result = SyncResult(run_id, _write_meta(changeset, run_id, source, taken_at))
    result.diff_seconds = time.perf_counter() - started
    started = time.perf_counter()
    state = NewState(baseline, changeset, tables)
    origin = {"source_path": str(source.resolve()), "snapshot_sha256": result.identity, "taken_at": taken_at}
    try:
        with conn.transaction():
            changes.suppress_for_load(conn)
            checksums.fixed_rendering(conn)
            # the sync touches few rows of big tables: key lookups, not scans (the data is cached)
            conn.execute("SET LOCAL random_page_cost = 1.1")
            for spec in catalog.tables:  # writers wait; readers go on
                conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(spec.name)))
            pending = {"keys": {}, "columns": {s.name: tables.get(s.name, ()) for s in catalog.tables}}
            removed, hashes = Counter(), Counter()
            for spec in catalog.tables:
                delta = _apply_table(
                    conn, catalog, spec, state, run_id, loads[spec.name], pending, removed, hashes
                )
                audit.record_table_load(conn, delta.result, origin, code_version(), mode=MODE)
                result.tables[spec.name] = delta
    except BaseException:
        state.close()
        changeset.unlink(missing_ok=True)
        raise
    state.close()
    result.apply_seconds = time.perf_counter() - started
    started = time.perf_counter()
    _advance_baseline(baseline, changeset)
    result.baseline_seconds = time.perf_counter() - started
    return result
