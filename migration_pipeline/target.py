"""The PostgreSQL target: where it is, connections to it, and its schema.

In:  :class:`~migration_pipeline.settings.Settings` (an external server, or the embedded one).
Out: :func:`conninfo` (the database created on first use), :func:`connect`, :func:`open_pool` (a
     ``psycopg_pool.ConnectionPool``), :func:`apply_schema` (the DDL of ``schema/``, idempotent,
     serialised between concurrent processes by an advisory lock).
Fails: :class:`TargetError` with a secret-free message when the server cannot be reached.
"""

from __future__ import annotations

import hashlib

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from . import local_postgres
from .catalog import Catalog
from .settings import Settings, redact

_SCHEMA_LOCK = 0x6D696772  # advisory lock key for DDL ("migr")


class TargetError(RuntimeError):
    """The target PostgreSQL cannot be reached or prepared."""


def _server_conninfo(settings: Settings) -> dict[str, str]:
    if settings.embedded:
        params = local_postgres.ensure_running()
    else:
        params = conninfo_to_dict(settings.external_conninfo)
    params.setdefault("application_name", "migration_pipeline")
    params.setdefault("connect_timeout", "10")
    return params


def _ensure_database(params: dict[str, str], database: str) -> None:
    try:
        with psycopg.connect(**params, dbname=database):
            return
    except psycopg.OperationalError as err:
        if "does not exist" not in str(err):
            raise TargetError(f"cannot connect to PostgreSQL: {redact(str(err))}") from None
    try:
        with psycopg.connect(**{**params, "dbname": "postgres"}, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    except psycopg.errors.DuplicateDatabase:
        pass  # another process created it first
    except psycopg.Error as err:
        raise TargetError(f"cannot create database {database}: {redact(str(err))}") from None


_ENSURED: set[str] = set()  # databases this process already found or created


def conninfo(settings: Settings) -> str:
    """A connection string for the target database, which exists once this returns (checked once per
    process: sensors call this on every tick)."""
    params = _server_conninfo(settings)
    params.pop("dbname", None)
    result = make_conninfo(**params, dbname=settings.database)
    if result not in _ENSURED:
        _ensure_database(params, settings.database)
        _ENSURED.add(result)
    return result


def connect(settings: Settings, *, autocommit: bool = True) -> psycopg.Connection:
    """A connection in autocommit mode: callers open transactions explicitly (``conn.transaction()``)."""
    try:
        return psycopg.connect(conninfo(settings), autocommit=autocommit)
    except psycopg.OperationalError as err:
        raise TargetError(f"cannot connect to PostgreSQL: {redact(str(err))}") from None


def open_pool(
    settings: Settings, *, min_size: int = 1, max_size: int = 4, name: str = "migration"
) -> ConnectionPool:
    pool = ConnectionPool(
        conninfo(settings),
        min_size=min_size,
        max_size=max_size,
        name=name,
        open=False,
        timeout=30,
        kwargs={"autocommit": True},
    )
    pool.open(wait=True, timeout=30)
    return pool


def _schema_current(conn: psycopg.Connection, catalog: Catalog, digest: str) -> bool:
    """Whether this very DDL was applied to the database and its tables and indexes are all there:
    read-only catalog lookups, so concurrent loads are never waited for."""
    if conn.execute("SELECT to_regclass('migration_audit.schema_applied')").fetchone()[0] is None:
        return False
    applied = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM migration_audit.schema_applied WHERE ddl_sha256 = %s)", (digest,)
    ).fetchone()[0]
    names = sorted(
        {spec.name for spec in catalog.tables} | {i for spec in catalog.tables for i in spec.indexes}
    )
    present = conn.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relname = ANY(%s)",
        (names,),
    ).fetchone()[0]
    return applied and present == len(names)


def apply_schema(conn: psycopg.Connection, catalog: Catalog) -> None:
    """Create whatever of ``schema/`` is missing (tables, indexes, the audit schema) and commit.

    Skipped when this DDL is recorded as applied and every table and index exists: running it anyway
    would take locks (``CREATE INDEX IF NOT EXISTS`` locks its table before it looks) that deadlock with
    a sibling table's load in progress. Processes applying it at once are serialised by an advisory lock
    and look again once they hold it."""
    digest = hashlib.sha256("\n".join(catalog.ddl).encode()).hexdigest()
    if _schema_current(conn, catalog, digest):
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        if _schema_current(conn, catalog, digest):
            return
        for ddl in catalog.ddl:
            conn.execute(ddl)
        conn.execute(
            "INSERT INTO migration_audit.schema_applied (ddl_sha256) VALUES (%s) ON CONFLICT DO NOTHING",
            (digest,),
        )
