"""Test helpers: expected values computed from the source with the value rules, content fingerprints."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from psycopg import sql
from psycopg.types.json import set_json_loads

from migration_pipeline.move.json_rules import parse_exact
from migration_pipeline.move.load import load_all
from migration_pipeline.move.source import Snapshot, take_snapshot
from migration_pipeline.prove import behaviour, proof
from migration_pipeline.prove.query_parity import comparable_row as converted  # noqa: F401 (used by tests)


def migrate(conn, catalog, source: Path, run_id: str, workdir: Path):
    info = take_snapshot(source, workdir / f"{run_id}.snapshot.db")
    with Snapshot(info.path) as snap:
        return load_all(conn, snap, catalog, run_id)


def editable_copy(source: Path, dest: Path) -> Path:
    shutil.copyfile(source, dest)
    for suffix in ("-wal", "-shm"):
        if Path(str(source) + suffix).exists():
            shutil.copyfile(str(source) + suffix, str(dest) + suffix)
    return dest


def source_rows(path: Path, table: str) -> list[tuple]:
    """(rowid, *values) of a source table, read the way the pipeline reads it."""
    with Snapshot(path) as snap:
        cols = snap.columns(table)
        return [row for batch in snap.stream(table, cols) for row in batch], cols


def target_rows(conn, spec, columns) -> dict[tuple, dict]:
    """The table's rows by key, jsonb parsed exactly as ``converted`` parses the source's JSON."""
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    with conn.cursor() as cur:
        set_json_loads(parse_exact, cur)
        rows = cur.execute(sql.SQL("SELECT {} FROM {}").format(cols, sql.Identifier(spec.name))).fetchall()
    pk_idx = [columns.index(c) for c in spec.primary_key]
    return {tuple(r[i] for i in pk_idx): dict(zip(columns, r, strict=True)) for r in rows}


def fingerprint(conn, table: str) -> str:
    """An order-independent digest of a table's full content."""
    return conn.execute(
        sql.SQL(
            "SELECT md5(coalesce(string_agg(md5(t::text), '' ORDER BY md5(t::text)), '')) FROM {} t"
        ).format(sql.Identifier(table))
    ).fetchone()[0]


def sqlite_exec(path: Path, *statements: str) -> None:
    db = sqlite3.connect(path)
    with db:
        for statement in statements:
            db.execute(statement)
    db.close()


def silently(conn, statement: str, params: tuple = ()) -> None:
    """A change the change log does not see (triggers off), like corruption or a rogue writer: the
    checks must notice it, unlike the app's own logged writes."""
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(statement, params)


def failures(conn, catalog, snapshot) -> dict[tuple[str, str], tuple[str, ...]]:
    """Every failing blocking check (tables' checks and the app's queries): (table, check) -> problems."""
    found = {}
    blocking = {c.name for c in proof.CHECKS if c.blocking}
    for table in catalog.names:
        for o in proof.run(conn, catalog, table, snapshot):
            if o.name in blocking and not o.passed:
                found[(table, o.name)] = o.problems
    for check, o in behaviour.run(conn, catalog, snapshot):
        if not o.passed:
            found[(check.table, o.name)] = o.problems
    return found
