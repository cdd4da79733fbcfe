"""The PostgreSQL target: where it is, connections to it, and its schema.

In:  :class:`~migration_pipeline.connect.settings.Settings` (an external server, or the embedded one).
Out: :func:`conninfo` (the database created on first use), :func:`connect`, :func:`open_pool` (a
     ``psycopg_pool.ConnectionPool``), :func:`apply_schema` (the DDL of ``schema/``, idempotent,
     serialised between concurrent processes by an advisory lock).
Fails: :class:`TargetError` with a secret-free message when the server cannot be reached, or when the
     role lacks a privilege the migration needs (:func:`privileges`): one line saying what and what to
     grant, chained to PostgreSQL's own error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from ..catalog import Catalog
from . import local_postgres
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
            raise TargetError(_unreachable(err)) from None
    try:
        with psycopg.connect(**{**params, "dbname": "postgres"}, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    except psycopg.errors.DuplicateDatabase:
        pass  # another process created it first
    except psycopg.errors.InsufficientPrivilege as err:
        user = params.get("user") or "the configured role"
        raise TargetError(
            f"PostgreSQL database {database} does not exist and role {user} may not create it "
            f"({_first_line(err)}): create it as an administrator (CREATE DATABASE {database} OWNER {user}) "
            "or set PG_DATABASE to an existing database"
        ) from err
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
        raise TargetError(_unreachable(err)) from None


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


def _first_line(err: psycopg.Error) -> str:
    return redact(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)


def _unreachable(err: psycopg.Error) -> str:
    # not chained: libpq's text is shown here, redacted, on one line
    return (
        f"cannot connect to PostgreSQL: {redact(' '.join(str(err).split()))}; check PG_DSN or PG_HOST, "
        "PG_PORT, PG_USER, PG_PASSWORD, and that the server is running and accepts this client"
    )


@contextmanager
def privileges(conn: psycopg.Connection) -> Iterator[None]:
    """Turn PostgreSQL's refusal of a privilege into a :class:`TargetError` naming the role, the
    database and what to grant (PostgreSQL's error stays chained below it)."""
    try:
        yield
    except psycopg.errors.InsufficientPrivilege as err:
        user, database = conn.info.user, conn.info.dbname
        raise TargetError(
            f"PostgreSQL role {user} lacks a privilege the migration needs in database {database} "
            f"({_first_line(err)}); nothing was changed. Run the migration as the database's owner, or have an "
            f"administrator run: GRANT CREATE ON DATABASE {database} TO {user}; GRANT CREATE ON SCHEMA public "
            f"TO {user}; (and ALTER TABLE ... OWNER TO {user} for tables it must replace)"
        ) from err


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
    with privileges(conn), conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        if _schema_current(conn, catalog, digest):
            return
        for ddl in catalog.ddl:
            conn.execute(ddl)
        conn.execute(
            "INSERT INTO migration_audit.schema_applied (ddl_sha256) VALUES (%s) ON CONFLICT DO NOTHING",
            (digest,),
        )
