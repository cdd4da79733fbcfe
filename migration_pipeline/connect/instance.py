"""The Dagster instance's own storage in PostgreSQL: runs, events and schedules next to the migration.

In:  :class:`~migration_pipeline.connect.settings.Settings` (the embedded server, or the configured one) and
     ``DAGSTER_PG_DB`` (default ``dagster_instance``).
Out: :func:`instance_env` returns the ``DAGSTER_PG_*`` variables that ``dagster_home/dagster.yaml`` reads
     (the embedded server's port changes from start to start, so the file names variables, not values),
     after creating that database if it is missing. ``python -m migration_pipeline.connect.instance env`` prints
     them as shell exports for ``make ui``.
Fails: TargetError (from target.py) when the server cannot be reached or the database created.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from .settings import Settings, load_settings, read_environment
from .target import conninfo

DAGSTER_HOME = Path(__file__).resolve().parents[2] / "dagster_home"


def instance_env(settings: Settings, database: str | None = None) -> dict[str, str]:
    database = database or read_environment().get("DAGSTER_PG_DB") or "dagster_instance"
    instance = Settings(settings.sqlite_path, database, settings.external_conninfo)
    params = conninfo_to_dict(conninfo(instance))  # creates the database on first use
    return {
        "DAGSTER_PG_HOST": str(params["host"]),
        "DAGSTER_PG_PORT": str(params.get("port", "5432")),
        "DAGSTER_PG_USER": str(params.get("user", "postgres")),
        "DAGSTER_PG_PASSWORD": str(params.get("password", "")),
        "DAGSTER_PG_DB": database,
        "DAGSTER_HOME": str(DAGSTER_HOME),
    }


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if args[:1] != ["env"]:
        print(
            "usage: python -m migration_pipeline.connect.instance env   (prints shell exports)",
            file=sys.stderr,
        )
        return 2
    for key, value in instance_env(load_settings()).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
