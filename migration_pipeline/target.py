"""The PostgreSQL target: where it is, connections to it, and its schema.

In:  :class:`~migration_pipeline.settings.Settings` (an external server, or the embedded one).
Out: :func:`conninfo` (the database created on first use), :func:`connect`, :func:`open_pool` (a
     ``psycopg_pool.ConnectionPool``), :func:`apply_schema` (the DDL of ``schema/``, idempotent,
     serialised between concurrent processes by an advisory lock).
Fails: :class:`TargetError` with a secret-free message when the server cannot be reached.
"""

from __future__ import annotations

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


def apply_schema(conn: psycopg.Connection, catalog: Catalog) -> None:
    """Create whatever of ``schema/`` is missing (tables, indexes, the audit schema) and commit."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        for ddl in catalog.ddl:
            conn.execute(ddl)
