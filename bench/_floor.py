"""Helpers of ``migrate_bench.py``: bare tables and the DDL that completes them (read from PostgreSQL's
own catalog of a database with ``schema/`` applied), ``psql`` and ``pgloader`` runs as timed children.

A *bare* table is what ``pg_restore`` creates before its data section: columns, types, defaults,
NOT NULL and CHECK, but no primary or unique key, no foreign key and no index. Its post-data section
then adds the keys, the indexes and last the foreign keys; :class:`PostLoad` holds those statements.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from migration_pipeline.catalog import Catalog
from migration_pipeline.connect import local_postgres

PSQL = local_postgres.POSTGRES_BIN_PATH / "psql"

CONSTRAINTS = """
SELECT c.contype, format('ALTER TABLE %I ADD CONSTRAINT %I %s', t.relname, c.conname, pg_get_constraintdef(c.oid)),
       format('ALTER TABLE %I DROP CONSTRAINT %I', t.relname, c.conname)
FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = 'public' AND c.contype IN ('p', 'u', 'f')
ORDER BY c.contype = 'f' DESC, t.relname, c.conname"""  # foreign keys dropped first
INDEXES = """
SELECT pg_get_indexdef(i.indexrelid), format('DROP INDEX %I.%I', n.nspname, x.relname)
FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid JOIN pg_namespace n ON n.oid = x.relnamespace
WHERE n.nspname = 'public' AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
ORDER BY x.relname"""


def maintenance_work_mem() -> str:
    """The ``maintenance_work_mem`` the project's load path gives its index builds (at least)."""
    from migration_pipeline.move.shadow import MAINTENANCE_WORK_MEM_MB

    return f"{MAINTENANCE_WORK_MEM_MB}MB"


@dataclass
class PostLoad:
    """What a bare table lacks, as ``pg_restore`` adds it after the data: phase name -> statements."""

    phases: dict[str, list[str]] = field(default_factory=lambda: {"keys": [], "indexes": [], "FKs": []})

    def script(self, phase: str, work_mem: str) -> str:
        return "\n".join(
            [f"SET maintenance_work_mem = '{work_mem}';", *(s + ";" for s in self.phases[phase])]
        )


def strip_to_bare(conn: psycopg.Connection) -> PostLoad:
    """Drop every foreign key, primary/unique key and index of the public tables; return them as DDL."""
    post = PostLoad()
    for contype, add, drop in conn.execute(CONSTRAINTS).fetchall():
        post.phases["FKs" if contype == "f" else "keys"].append(add)
        conn.execute(drop)
    for create, drop in conn.execute(INDEXES).fetchall():
        post.phases["indexes"].append(create)
        conn.execute(drop)
    return post


@dataclass
class Run:
    seconds: float
    rss: int  # peak RSS of the process, bytes
    out: str
    err: str
    code: int


def _hwm(pid: int) -> int:
    """The process's peak resident set (VmHWM) so far, in bytes; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:")), 0)
    except OSError:
        return 0


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (a Dagster run's step processes, say)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    todo.extend(int(child) for child in f.read().split())
        except OSError:
            continue
    return found


def run(argv: list[str], env: dict | None = None) -> Run:
    """Run a child, timing it, and the peak RSS of its processes: the most of the VmHWM of it or of any
    process below it (each on its own, not their sum), read every 20 ms until it exits
    (``os.wait4``'s ``ru_maxrss`` would also count the bench's own pages the child had before its exec).
    Its output goes through files, so that nothing else reaps it."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env={**os.environ, **(env or {})})  # fmt: skip
        peak = 0
        while True:
            pid, status, _usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max([peak, *map(_hwm, _descendants(proc.pid))])
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        return Run(seconds, peak, out.read(), err.read(), proc.returncode)


def psql(server: dict, database: str, script: str, *, stop_on_error: bool = True) -> Run:
    """Run ``script`` with psql against ``database``; raises on an error unless ``stop_on_error`` is off
    (then the errors are in ``Run.err``)."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as f:
        f.write(script + "\n")
        f.flush()
        argv = [str(PSQL), "-X", "-q", "-v", f"ON_ERROR_STOP={int(stop_on_error)}", "-h", server["host"],
                "-p", server["port"], "-U", server["user"], "-d", database, "-f", f.name]  # fmt: skip
        result = run(argv, env={"PGPASSWORD": server["password"]})
    if stop_on_error and result.code != 0:
        raise SystemExit(f"psql failed on {database}: {result.err.strip()[-2000:]}")
    return result


def fresh_database(server: dict, name: str, ddl: tuple[str, ...] = ()) -> None:
    """Create ``name`` anew (dropping any leftover) and run ``ddl`` in it."""
    drop_database(server, name)
    with psycopg.connect(**server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    if ddl:
        with psycopg.connect(**{**server, "dbname": name}, autocommit=True) as conn:
            for statement in ddl:
                conn.execute(statement)


def drop_database(server: dict, name: str) -> None:
    with psycopg.connect(**server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def checkpoint(server: dict) -> None:
    """Write out what earlier runs left dirty, so that no case pays for another's writes."""
    with psycopg.connect(**server, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def export_csv(server: dict, database: str, catalog: Catalog, directory: Path) -> None:
    """Every table of ``database`` as ``<table>.csv`` in ``directory`` (COPY TO STDOUT, CSV)."""
    with psycopg.connect(**{**server, "dbname": database}, autocommit=True) as conn:
        for spec in catalog.tables:
            export = sql.SQL("COPY {} TO STDOUT (FORMAT csv)").format(sql.Identifier(spec.name))
            with (
                open(directory / f"{spec.name}.csv", "wb") as f,
                conn.cursor() as cur,
                cur.copy(export) as cp,
            ):
                for chunk in cp:
                    f.write(chunk)


def copy_script(catalog: Catalog, directory: Path, schema: str = "public") -> str:
    """psql's ``\\copy`` of every table from its CSV file."""
    return "\n".join(
        f"\\copy {schema}.{spec.name} FROM '{directory / (spec.name + '.csv')}' WITH (FORMAT csv)"
        for spec in catalog.tables
    )
