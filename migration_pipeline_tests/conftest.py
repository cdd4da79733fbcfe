"""Fixtures: the checkout's embedded PostgreSQL (real server), a fresh database per test, real SQLite files."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings as hypothesis_settings
from psycopg import sql

from migration_pipeline.catalog import load_catalog
from migration_pipeline.connect import local_postgres
from migration_pipeline.connect.settings import Settings
from migration_pipeline.connect.target import connect
from migration_pipeline.samples.sample_data import generate

# CI replays the same examples every run (no flaky red); locally hypothesis explores new ones.
hypothesis_settings.register_profile("ci", derandomize=True, max_examples=200, deadline=None)
hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def server() -> dict[str, str]:
    """Connection parameters of the embedded server (started if needed, left running)."""
    return local_postgres.ensure_running()


@pytest.fixture
def database(server) -> str:
    """A new, empty database on the embedded server, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(**server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield name
    with psycopg.connect(**server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def settings(database, tmp_path) -> Settings:
    return Settings(sqlite_path=tmp_path / "twitter.db", database=database)


@pytest.fixture
def conn(settings):
    with connect(settings) as connection:
        yield connection


@pytest.fixture
def catalog():
    return load_catalog()


@pytest.fixture(scope="session")
def sample_db(tmp_path_factory) -> Path:
    """An app-shaped database with every kind of broken value (read-only for tests: copy to modify)."""
    path = tmp_path_factory.mktemp("sample") / "twitter.db"
    return generate(path, users=300, tweets=3_000, bad_fraction=0.01, with_queue=True)
