"""The target's errors: a role lacking a privilege is told, in one line, what to grant."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql

from migration_pipeline.connect.settings import Settings
from migration_pipeline.connect.target import TargetError, connect
from migration_pipeline.move.load import load_all
from migration_pipeline.move.source import Snapshot, take_snapshot


@pytest.fixture
def weak_role(server):
    """A login role with the default privileges only: it may connect, not create anything."""
    name, password = f"weak_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(**server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), password))
    yield name, password
    with psycopg.connect(**server, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_a_role_without_create_rights_is_told_what_to_grant(
    server, database, weak_role, sample_db, catalog, tmp_path
):
    user, password = weak_role
    settings = Settings(
        sample_db,
        database,
        f"host={server['host']} port={server['port']} user={user} password={password} dbname={database}",
    )
    info = take_snapshot(sample_db, tmp_path / "s.db")
    with connect(settings) as conn, Snapshot(info.path) as snap, pytest.raises(TargetError) as err:
        load_all(conn, snap, catalog, "run-weak")
    message = str(err.value)
    assert f"role {user} lacks a privilege the migration needs in database {database}" in message
    assert "permission denied" in message and f"GRANT CREATE ON DATABASE {database} TO {user}" in message
    assert "\n" not in message and password not in message
    assert isinstance(err.value.__cause__, psycopg.errors.InsufficientPrivilege)
