"""The Dagster instance's storage class (``dagster_home/dagster.yaml``): dagster-postgres on the migration's
own server, the embedded one or the configured one, found the way the migration finds it.

Every Dagster process of the checkout (``dagster dev``, its daemon, ``dagster job execute``, the step
processes, ``migration-pipeline``) builds it from the same configuration, so all of them record into
one history, and no port or password is written into the instance's config or its serialized form.

A server that refuses the instance's database (a role without CREATEDB, say) must not stop a migration:
the history then goes to SQLite files under ``.local/dagster`` (every process of the checkout finds the
same ones), with a warning naming the reason.
"""

from __future__ import annotations

import warnings

from dagster import Field
from dagster._core.storage.base_storage import DagsterStorage
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster_postgres import DagsterPostgresStorage

from ..connect.instance import storage_url
from ..connect.local_postgres import state_dir
from ..connect.settings import load_settings
from ..connect.target import TargetError


class MigrationServerStorage(DagsterPostgresStorage):
    """Runs, event logs and schedules in database ``database`` (default ``DAGSTER_PG_DB``, else
    ``dagster_instance``) of the migration's PostgreSQL server."""

    @classmethod
    def config_type(cls):
        return {"database": Field(str, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> DagsterStorage:
        try:
            url = storage_url(load_settings(), config_value.get("database"))
        except TargetError as err:
            fallback = state_dir() / "dagster"
            warnings.warn(f"Dagster instance kept in {fallback} (SQLite): {err}", stacklevel=1)
            return DagsterSqliteStorage.from_local(str(fallback), inst_data=inst_data)
        return cls(postgres_url=url, inst_data=inst_data)
