"""Roll back: export PostgreSQL to a new SQLite file in the app's own format.

In:  a connection to the target, the catalog, the path of a new SQLite file and optionally a template (a
     SQLite file shaped like the app's, e.g. the migration's source snapshot), read with mode=ro&immutable=1.
Out: :func:`export_sqlite` writes every target table, with the rows the app wrote to PostgreSQL after the
     switch, in the app's habits: the template's CREATE TABLE/INDEX statements (the app's DDL of
     schema/sqlite/ without one), booleans 1/0, jsonb as compact JSON text, timestamps as each column mostly holds them
     in the template ('YYYY-MM-DD HH:MM:SS' UTC, or toISOString's '...T...Z'; sub-second digits always
     kept), rows in primary-key order, then the rows the latest load quarantined, with their original
     values, and sqlite_sequence past every id. One REPEATABLE READ, READ ONLY transaction, streamed in
     batches (a table's quarantined rows are held in memory: they are few). Values the app's column types
     cannot hold exactly are written anyway and counted (``TableExport.inexact``).
     ``python -m migration_pipeline.switch.rollback --out PATH`` does it with the configured settings.
Fails: :class:`ExportError` when the path exists, the connection is inside a transaction, a table is
     missing in PostgreSQL, a PostgreSQL row breaks a constraint of the template's table or the new file
     fails its integrity check; psycopg and sqlite3 errors propagate.
     Nothing is ever left at the path unless the export succeeded, and no existing file is opened for writing.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from ..catalog import SQLITE_APP_DDL, SQLITE_QUEUE_DDL, Catalog, TableSpec, load_catalog
from ..connect.settings import Settings, load_settings
from ..connect.target import connect
from ..move import audit
from ..move.convert import InvalidText, Rejected, convert_json
from ..move.source import Snapshot, default_snapshot_path, quote

BATCH_ROWS = 5_000
HABIT_SAMPLE = 1_000  # template values looked at per timestamp column
SQLITE_HABIT, ISO_HABIT = "sqlite", "iso"  # CURRENT_TIMESTAMP's form, toISOString()'s form
_PG_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?\+00")  # TimeZone UTC, ISO
_ISO_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
_PLAIN = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?")
_JSON_TOKEN = re.compile(r'("(?:[^"\\]|\\.)*")|\s+')
_AUTOINCREMENT = re.compile(r"\bAUTOINCREMENT\b", re.IGNORECASE)
_SELECT = {"boolean": "{}::int", "jsonb": "{}::text", "timestamptz": "{}::text"}
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


@dataclass(frozen=True)
class _TableDDL:
    create: str
    indexes: tuple[str, ...]
    origin: str


# --- values -----------------------------------------------------------------------------------


def compact_json(text: str) -> str:
    """jsonb's own text without the blanks it puts after ',' and ':' (JSON.stringify's form). Numbers,
    strings and escapes stay exactly as jsonb wrote them, so the text parses back to the same jsonb."""
    if "\\" not in text:  # no escaped quote: quotes alternate string / structure
        parts = text.split('"')
        parts[::2] = [p.replace(" ", "") for p in parts[::2]]
        return '"'.join(parts)
    return _JSON_TOKEN.sub(lambda m: m.group(1) or "", text)


def format_timestamp(text: str, habit: str = SQLITE_HABIT) -> str | None:
    """A timestamptz as PostgreSQL renders it (TimeZone UTC, DateStyle ISO) in the app's form:
    'YYYY-MM-DD HH:MM:SS' or 'YYYY-MM-DDTHH:MM:SS.mmmZ'. A value with sub-second digits always gets the
    ISO form (milliseconds, or microseconds when it has them), which convert_timestamp reads back to the
    same instant. None for a value no app form holds (infinity, BC, years past 9999)."""
    match = _PG_TIMESTAMP.fullmatch(text)
    if match is None:
        return None
    date, clock, frac = match.groups()
    if frac is None and habit == SQLITE_HABIT:
        return f"{date} {clock}"
    frac = frac or ""
    return f"{date}T{clock}.{frac.ljust(3 if len(frac) <= 3 else 6, '0')}Z"


class _JsonNumbers:
    """Whether a top-level JSON number survives SQLite: a column declared JSON has NUMERIC affinity and
    stores the text '1.0' as the integer 1. Asks SQLite what it stores and PostgreSQL whether the load's
    converter turns that back into the same jsonb (rare values: only top-level numbers come here)."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn
        self.db = sqlite3.connect(":memory:")
        self.tables: dict[str, str] = {}

    def exact(self, text: str, declared: str) -> bool:
        if declared not in self.tables:
            self.tables[declared] = f"p{len(self.tables)}"
            self.db.execute(f"CREATE TABLE {self.tables[declared]} (v {declared})")
        table = self.tables[declared]
        self.db.execute(f"INSERT INTO {table} VALUES (?)", (text,))
        stored = self.db.execute(f"SELECT v FROM {table}").fetchone()[0]
        self.db.execute(f"DELETE FROM {table}")
        try:
            back = convert_json(stored)
        except Rejected:
            return False
        return self.conn.execute("SELECT %s::jsonb::text = %s::jsonb::text", (back, text)).fetchone()[0]


def _writer(kind: str, habit: str, declared: str, numbers: _JsonNumbers, inexact: Counter, column: str):
    if kind == "timestamptz":

        def write(value: str) -> str:
            out = format_timestamp(value, habit)
            if out is None:
                inexact[column] += 1
                return value  # as PostgreSQL wrote it: the app (and a reload) sees what is there
            return out

    else:

        def write(value: str) -> str:
            out = compact_json(value)
            if out[0] in "-0123456789" and not numbers.exact(out, declared):
                inexact[column] += 1
            return out

    return write


def _original(value: object) -> object:
    """A raw_row value (audit.raw_row_json) as SQLite held it."""
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


def _int64_or_real(text: str) -> int | float:
    number = int(text)  # jsonb writes a large REAL (1e300) without exponent; SQLite integers are 64-bit
    return number if -(2**63) <= number < 2**63 else float(text)


def _order(value: object) -> tuple:
    """SQLite's order of values (NULL, numbers, TEXT by bytes, BLOB), for the restored rows' keys."""
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value.encode("utf-8", "surrogatepass"))
    return (3 if not isinstance(value, InvalidText) else 2, bytes(value))


# --- DDL and habits ---------------------------------------------------------------------------


def _ddl(query: Callable[[str], list[tuple]], origin: str) -> dict[str, _TableDDL]:
    """{table: its CREATE TABLE and CREATE INDEX statements} from a SQLite database's sqlite_master."""
    rows = query("SELECT type, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid")
    return {
        name: _TableDDL(create, tuple(t for k, n, t in rows if k == "index" and n == name), origin)
        for kind, name, create in rows
        if kind == "table"
    }


@cache
def _script_ddl(script: str) -> dict[str, _TableDDL]:
    """The DDL of a script of schema/sqlite/ (the app's own CREATE TABLE statements, as sample_data writes them)."""
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(script)
        return _ddl(lambda q: db.execute(q).fetchall(), "sample_data")
    finally:
        db.close()


def _read_template(path: Path, catalog: Catalog) -> tuple[dict[str, _TableDDL], dict[tuple[str, str], str]]:
    """The template's DDL, and per timestamp column the habit most of its text values follow."""
    habits = {}
    with Snapshot(path) as snap:
        ddl = _ddl(snap.query, "template")
        for spec in catalog.tables:
            present = snap.columns(spec.name) if spec.name in ddl else []
            for col in (c.name for c in spec.columns if c.kind == "timestamptz" and c.name in present):
                q = quote(col)
                select = f"SELECT {q} FROM {quote(spec.name)} WHERE typeof({q}) = 'text' LIMIT {HABIT_SAMPLE}"
                values = [v for (v,) in snap.query(select) if isinstance(v, str)]
                iso = sum(1 for v in values if _ISO_Z.fullmatch(v))
                plain = sum(1 for v in values if _PLAIN.fullmatch(v))
                habits[spec.name, col] = ISO_HABIT if iso > plain else SQLITE_HABIT
    return ddl, habits


# --- the export -------------------------------------------------------------------------------


def _quarantined(conn: psycopg.Connection, spec: TableSpec, audited: bool) -> list[tuple[str, dict]]:
    """(source_key, original values) of the rows the table's latest load quarantined, in key order."""
    load = audit.latest_load(conn, spec.name) if audited else None
    if load is None:
        return []
    rows = conn.execute(
        "SELECT source_key, raw_row::text FROM migration_audit.rejected_rows WHERE run_id = %s AND table_name = %s",
        (load["run_id"], spec.name),
    ).fetchall()
    decoded = [
        (key, {c: _original(v) for c, v in json.loads(raw, parse_int=_int64_or_real).items()})
        for key, raw in rows
    ]
    return sorted(decoded, key=lambda r: (tuple(_order(r[1].get(c)) for c in spec.primary_key), _rowid(r[0])))


def _rowid(source_key: str | None) -> int:
    """The rowid a source_key names for a row without a usable key (``rowid:N``), else 0."""
    is_rowid = source_key and source_key.startswith("rowid:") and source_key[6:].isdigit()
    return int(source_key[6:]) if is_rowid else 0  # a text key may itself read 'rowid:x'


def _restore(db: sqlite3.Connection, spec: TableSpec, present: list[str], rows, result: TableExport) -> None:
    """Insert quarantined rows after PostgreSQL's (so a reload keeps PostgreSQL's row on any tie); a row
    that cannot go in (its key is now PostgreSQL's) is skipped and reported."""

    def skip(key: str, why: str) -> None:
        result.skipped += 1
        if len(result.skipped_keys) < _KEPT_SKIPS:
            result.skipped_keys.append(f"{key}: {why}")

    for key, row in rows:
        missing = [c for c in row if c not in present]
        if missing:
            skip(key, f"the exported table has no column {', '.join(missing)}")
            continue
        marks = ", ".join("CAST(? AS TEXT)" if isinstance(v, InvalidText) else "?" for v in row.values())
        try:
            db.execute(
                f"INSERT INTO {quote(spec.name)} ({', '.join(map(quote, row))}) VALUES ({marks})",
                list(row.values()),
            )
        except sqlite3.IntegrityError as err:
            skip(key, f"kept PostgreSQL's row ({err})")
        else:
            result.restored += 1


def _export_table(conn, db, spec: TableSpec, ddl: _TableDDL, habits, quarantined, numbers) -> TableExport:
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
        (i, _writer(kind, habits.get((spec.name, c), SQLITE_HABIT), info[c], numbers, inexact, c))
        for i, (c, kind) in enumerate(zip(columns, kinds, strict=True))
        if kind in ("timestamptz", "jsonb")
    ]
    select = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
        sql.SQL(", ").join(
            sql.SQL(_SELECT.get(k, "{}")).format(sql.Identifier(c))
            for c, k in zip(columns, kinds, strict=True)
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
    _restore(db, spec, list(info), quarantined, result)
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
    app, queue = _script_ddl(SQLITE_APP_DDL), _script_ddl(SQLITE_QUEUE_DDL)
    always, habits = _read_template(Path(template), catalog) if template else (app, {})
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
            numbers = _JsonNumbers(conn)
            db.execute("BEGIN")
            for spec in catalog.tables:
                quarantined = _quarantined(conn, spec, audited and include_quarantined)
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
