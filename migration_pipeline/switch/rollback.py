"""Roll back: export PostgreSQL to a new SQLite file in the app's own format.

In:  a connection to the target, the catalog, the path of a new SQLite file and optionally a template (a
     SQLite file shaped like the app's, e.g. the migration's source snapshot), read with mode=ro&immutable=1.
Out: :func:`export_sqlite` writes every target table, with the rows the app wrote to PostgreSQL after the
     switch, in the app's habits: the template's CREATE TABLE/INDEX statements (the app's DDL of
     schema/sqlite/ without one), booleans 1/0, jsonb as compact JSON text, timestamps as each column
     mostly holds them in the template ('YYYY-MM-DD HH:MM:SS' UTC, or toISOString's '...T...Z'; sub-second digits always
     kept), rows in primary-key order, then the rows the latest load quarantined, with their original
     values, and sqlite_sequence past every id. One REPEATABLE READ, READ ONLY transaction, streamed in
     batches (a table's quarantined rows are held in memory: they are few). Values the app's column types
     cannot hold exactly are written anyway and counted (``TableExport.inexact``). The value rules are
     sqlite_values.py's, the DDL and habits app_format.py's, the quarantined rows restore.py's.
     ``python -m migration_pipeline.switch.rollback --out PATH`` does it with the configured settings.
Fails: :class:`ExportError` when the path exists, the connection is inside a transaction, a table is
     missing in PostgreSQL, a PostgreSQL row breaks a constraint of the template's table or the new file
     fails its integrity check; psycopg and sqlite3 errors propagate.
     Nothing is ever left at the path unless the export succeeded, and no existing file is opened for writing.
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from ..catalog import SQLITE_APP_DDL, SQLITE_QUEUE_DDL, Catalog, TableSpec, load_catalog
from ..connect.settings import Settings, load_settings
from ..connect.target import connect
from ..move.source import default_snapshot_path, quote
from . import restore
from .app_format import JsonNumbers, TableDDL, column_writer, read_template, script_ddl
from .sqlite_values import SQLITE_HABIT, read_as, writer_for

BATCH_ROWS = 5_000
_AUTOINCREMENT = re.compile(r"\bAUTOINCREMENT\b", re.IGNORECASE)
_KEPT_SKIPS = 10


class ExportError(RuntimeError):
    """The export cannot be written; nothing was left at the requested path."""


@dataclass
class TableExport:
    table: str
    ddl_from: str  # where its CREATE TABLE came from: "template", or "sample_data" (schema/sqlite/, as the sample has it)
    rows: int = 0  # rows exported from PostgreSQL
    restored: int = 0  # quarantined rows restored with their original values
    skipped: int = 0  # quarantined rows not restored (their key now belongs to a PostgreSQL row, ...)
    skipped_keys: list[str] = field(default_factory=list)  # the first few, with why
    inexact: dict[str, int] = field(default_factory=dict)  # column -> values SQLite cannot hold exactly
    dropped_columns: tuple[str, ...] = ()  # PostgreSQL columns the template's table does not have


@dataclass
class ExportResult:
    path: Path
    tables: dict[str, TableExport]  # the exported tables, in load order
    as_of: datetime  # start of the PostgreSQL transaction: every table is as it was then
    seconds: float
    template: Path | None


def _export_table(conn, db, spec: TableSpec, ddl: TableDDL, habits, quarantined, numbers) -> TableExport:
    db.execute(ddl.create)
    info = {r[1]: r[2] for r in db.execute(f"PRAGMA table_info({quote(spec.name)})")}
    columns = [c for c in spec.column_names if c in info]
    if not set(spec.primary_key) <= set(columns):
        raise ExportError(f"the template's table {spec.name} lacks its primary key {spec.primary_key}")
    result = TableExport(
        spec.name, ddl.origin, dropped_columns=tuple(c for c in spec.column_names if c not in info)
    )
    inexact: Counter[str] = Counter()
    kinds = [spec.column(c).kind for c in columns]
    writers = [
        (i, column_writer(kind, habits.get((spec.name, c), SQLITE_HABIT), info[c], numbers, inexact, c))
        for i, (c, kind) in enumerate(zip(columns, kinds, strict=True))
        if writer_for(kind) is not None
    ]
    select = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
        sql.SQL(", ").join(
            sql.SQL(read_as(k)).format(sql.Identifier(c)) for c, k in zip(columns, kinds, strict=True)
        ),
        sql.Identifier(spec.name),
        sql.SQL(", ").join(
            sql.SQL('{} COLLATE "C"' if spec.column(c).kind == "text" else "{}").format(sql.Identifier(c))
            for c in spec.primary_key
        ),  # byte order: SQLite's BINARY collation
    )
    insert = f"INSERT INTO {quote(spec.name)} ({', '.join(map(quote, columns))}) VALUES ({', '.join('?' * len(columns))})"
    with conn.cursor(name=f"rollback_{spec.name}") as cur:
        cur.execute(select)
        while batch := cur.fetchmany(BATCH_ROWS):
            rows = [list(r) for r in batch]
            for row in rows:
                for i, write in writers:
                    if row[i] is not None:
                        row[i] = write(row[i])
            try:
                db.executemany(insert, rows)
            except sqlite3.IntegrityError as err:
                raise ExportError(f"a row of {spec.name} does not fit the template's table: {err}") from None
            result.rows += len(rows)
    result.restored, skipped = restore.put_back(db, spec, list(info), quarantined)
    result.skipped, result.skipped_keys = len(skipped), skipped[:_KEPT_SKIPS]
    for index in ddl.indexes:
        db.execute(index)
    if _AUTOINCREMENT.search(ddl.create) and spec.serial_columns[:1] == spec.primary_key:
        # the app numbers on past PostgreSQL's sequence too, not only past the highest id exported
        last = conn.execute(
            "SELECT pg_sequence_last_value(pg_get_serial_sequence(%s, %s)::regclass)",
            (spec.name, spec.primary_key[0]),
        ).fetchone()[0]
        seq = db.execute("SELECT max(seq) FROM sqlite_sequence WHERE name = ?", (spec.name,)).fetchone()[0]
        if last and (seq is None or seq < last):
            db.execute("DELETE FROM sqlite_sequence WHERE name = ?", (spec.name,))
            db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (spec.name, last))
    result.inexact = dict(inexact)
    return result


def _publish(partial: Path, out_path: Path) -> None:
    """Move the finished file to ``out_path`` without ever replacing a file that appeared meanwhile."""
    try:
        os.link(partial, out_path)
    except FileExistsError:
        raise ExportError(f"{out_path} appeared during the export; it was left untouched") from None
    except OSError:  # a file system without hard links
        if out_path.exists():
            raise ExportError(f"{out_path} appeared during the export; it was left untouched") from None
        os.replace(partial, out_path)
    finally:
        partial.unlink(missing_ok=True)


def export_sqlite(
    conn: psycopg.Connection,
    catalog: Catalog,
    out_path: Path,
    *,
    template: Path | None = None,
    include_quarantined: bool = True,
) -> ExportResult:
    """Write PostgreSQL's tables into a new SQLite file at ``out_path``; see module doc."""
    started = time.monotonic()
    out_path = Path(out_path)
    for existing in (out_path, *(Path(f"{out_path}{s}") for s in ("-journal", "-wal", "-shm"))):
        if existing.exists():
            raise ExportError(f"{existing} exists; a rollback export never overwrites a file")
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise ExportError("export_sqlite needs a connection outside any transaction (it opens its own)")
    app, queue = script_ddl(SQLITE_APP_DDL), script_ddl(SQLITE_QUEUE_DDL)
    always, habits = read_template(Path(template), catalog) if template else (app, {})
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(f".{out_path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
    db = sqlite3.connect(partial, isolation_level=None)
    tables: dict[str, TableExport] = {}
    try:
        db.execute("PRAGMA journal_mode = OFF")  # a private file until published: no journal needed
        db.execute("PRAGMA synchronous = OFF")
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute("SET LOCAL TimeZone = 'UTC'")
            conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
            as_of = conn.execute("SELECT now()").fetchone()[0]
            missing = [
                t for t in catalog.names if conn.execute("SELECT to_regclass(%s)", (t,)).fetchone()[0] is None
            ]
            if missing:
                raise ExportError(f"PostgreSQL has no table {', '.join(missing)}: nothing to roll back from")
            audited = (
                conn.execute("SELECT to_regclass('migration_audit.rejected_rows')").fetchone()[0] is not None
            )
            numbers = JsonNumbers(conn)
            db.execute("BEGIN")
            for spec in catalog.tables:
                quarantined = restore.quarantined_rows(conn, spec, audited and include_quarantined)
                ddl = always.get(spec.name)
                if ddl is None:  # a table the app does not create: only when there is something to keep
                    query = sql.SQL("SELECT EXISTS (SELECT FROM {})").format(sql.Identifier(spec.name))
                    if not quarantined and not conn.execute(query).fetchone()[0]:
                        continue
                    ddl = app.get(spec.name) or queue.get(spec.name)
                    if ddl is None:
                        raise ExportError(f"no SQLite DDL for table {spec.name}: add it to schema/sqlite/")
                tables[spec.name] = _export_table(conn, db, spec, ddl, habits, quarantined, numbers)
            db.execute("COMMIT")
        db.execute("PRAGMA journal_mode = DELETE")
        problems = [r[0] for r in db.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise ExportError(f"the exported file fails its integrity check: {problems[:5]}")
        db.close()
        fd = os.open(partial, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _publish(partial, out_path)
    except BaseException:
        db.close()
        partial.unlink(missing_ok=True)
        raise
    return ExportResult(
        out_path, tables, as_of, time.monotonic() - started, Path(template) if template else None
    )


def check_destination(out_path: Path, settings: Settings) -> None:
    """Refuse (ExportError) to export onto the app's own SQLite file (SQLITE_PATH)."""
    if Path(out_path).resolve() == settings.sqlite_path.resolve():
        raise ExportError(f"{out_path} is the app's own SQLite file (SQLITE_PATH): export to a new path")


def export_configured(
    conn: psycopg.Connection,
    catalog: Catalog,
    settings: Settings,
    out_path: Path,
    *,
    template: Path | None = None,
    include_quarantined: bool = True,
) -> ExportResult:
    """:func:`export_sqlite` for the configured source: never onto the app's own file, and with the
    migration's snapshot (if any) as the template unless another is given."""
    check_destination(out_path, settings)
    if template is None and default_snapshot_path(settings).is_file():
        template = default_snapshot_path(settings)
    return export_sqlite(conn, catalog, out_path, template=template, include_quarantined=include_quarantined)


def summary(result: ExportResult) -> str:
    lines = [
        f"wrote {result.path} in {result.seconds:.1f} s: PostgreSQL as of {result.as_of.isoformat()}, "
        f"DDL from {result.template or 'sample_data (no template)'}",
        f"{'table':<22}{'rows':>10}{'restored':>10}{'skipped':>9}  notes",
    ]
    for t in result.tables.values():
        notes = [f"inexact {c}: {n}" for c, n in t.inexact.items()]
        notes += [f"dropped columns: {', '.join(t.dropped_columns)}"] if t.dropped_columns else []
        notes += [f"DDL from {t.ddl_from}"] if t.ddl_from != "template" and result.template else []
        lines.append(f"{t.table:<22}{t.rows:>10}{t.restored:>10}{t.skipped:>9}  {'; '.join(notes)}")
        lines += [f"    skipped {k}" for k in t.skipped_keys]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Export PostgreSQL to a new SQLite file in the app's format."
    )
    parser.add_argument("--out", type=Path, required=True, help="the new SQLite file (must not exist)")
    parser.add_argument(
        "--template", type=Path, help="an app-shaped SQLite file (default: the migration's snapshot, if any)"
    )
    parser.add_argument("--no-quarantined", action="store_true", help="do not restore quarantined rows")
    args = parser.parse_args(argv)
    settings = load_settings()
    try:
        check_destination(args.out, settings)
    except ExportError as err:
        parser.error(f"--out {err}")
    if args.out.exists():
        parser.error(f"--out {args.out} exists; a rollback export never overwrites a file")
    try:
        with connect(settings) as conn:
            result = export_configured(
                conn,
                load_catalog(),
                settings,
                args.out,
                template=args.template,
                include_quarantined=not args.no_quarantined,
            )
    except ExportError as err:
        parser.exit(1, f"rollback export failed: {err}\n")
    print(summary(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
