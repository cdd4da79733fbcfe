"""Connect, wired: the Dagster resource saying where the source is and which PostgreSQL is the target, and
schedules timed by a setting (thin wiring over connect/settings.py and connect/target.py)."""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import psycopg
from dagster import (
    ConfigurableResource,
    DefaultScheduleStatus,
    InitResourceContext,
    JobDefinition,
    ScheduleDefinition,
)
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool
from pydantic import Field, PrivateAttr

from ..connect.settings import Settings, load_settings, schedule_setting
from ..connect.target import open_pool
from ..move.guard import ShrinkPolicy
from ..move.source import default_snapshot_path


class MigrationResource(ConfigurableResource):
    """Source and target of the migration. Empty fields fall back to the environment and
    ``.env.migration`` (contract "Configuration"); tests and operators may pin them here."""

    sqlite_path: str | None = None
    pg_database: str | None = None
    allow_shrink: str = Field(
        default="",
        description="Tables (comma-separated, or *) this run may shrink beyond MAX_SHRINK_SHARE or empty: "
        "the operator's confirmation that the source is right, recorded in migration_audit.table_loads. "
        "Adds to the ALLOW_SHRINK setting.",
    )

    _pool: ConnectionPool | None = PrivateAttr(default=None)

    @property
    def settings(self) -> Settings:
        settings = load_settings()
        overrides: dict = {}
        if self.sqlite_path:
            overrides["sqlite_path"] = Path(self.sqlite_path)
        if self.pg_database:
            overrides["database"] = self.pg_database
            if settings.external_conninfo:
                params = {**conninfo_to_dict(settings.external_conninfo), "dbname": self.pg_database}
                overrides["external_conninfo"] = make_conninfo(**params)
        return replace(settings, **overrides)

    def shrink_policy(self) -> ShrinkPolicy:
        """How much a load may remove: the settings, widened by this run's ``allow_shrink``."""
        return ShrinkPolicy.of(self.settings, self.allow_shrink)

    @property
    def snapshot_path(self) -> Path:
        """Where this source/target pair keeps its consistent snapshot of the source."""
        return default_snapshot_path(self.settings)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def pool(self) -> ConnectionPool | None:
        """The pool this process opened (None before the first connection), for its stats."""
        return self._pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection to the target database (the pool opens on first use)."""
        if self._pool is None:
            self._pool = open_pool(self.settings, min_size=1, max_size=2)
        with self._pool.connection() as conn:
            yield conn


def setting_schedule(
    name: str,
    job: JobDefinition,
    setting: str,
    default_cron: str,
    description: str,
    env: Mapping[str, str] | None = None,
) -> ScheduleDefinition:
    """A UTC schedule of ``job`` at ``<setting>_CRON`` (default ``default_cron``), stopped when
    ``<setting>_SCHEDULE=off``."""
    when = schedule_setting(setting, default_cron, env)
    return ScheduleDefinition(
        name=name,
        job=job,
        cron_schedule=when.cron,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING if when.running else DefaultScheduleStatus.STOPPED,
        description=description,
    )
