"""The Dagster instance's own storage in PostgreSQL: runs, events and schedules next to the migration.

In:  :class:`~migration_pipeline.connect.settings.Settings` (the embedded server, or the configured one) and
     ``DAGSTER_PG_DB`` (default ``dagster_instance``).
Out: :func:`storage_url` is the dagster-postgres URL of that database on the target's server (creating the
     database on first use), which ``dagster_home/dagster.yaml``'s storage class reads in every Dagster
     process, so no port or password is ever written down; :func:`instance_env` is what a process needs to
     use that instance: ``DAGSTER_HOME`` (and ``DAGSTER_PG_DB`` when set), no secret.
     ``python -m migration_pipeline.connect.instance env`` prints them as shell exports.
Fails: TargetError (from target.py) when the server cannot be reached or the database created.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from urllib.parse import quote

from psycopg.conninfo import conninfo_to_dict

from .settings import Settings, load_settings, read_environment
from .target import conninfo

DAGSTER_HOME = Path(__file__).resolve().parents[2] / "dagster_home"


def _database(database: str | None) -> str:
    return database or read_environment().get("DAGSTER_PG_DB") or "dagster_instance"


def storage_url(settings: Settings, database: str | None = None) -> str:
    """``postgresql+psycopg2://...`` of the instance's database (dagster-postgres is written for psycopg2;
    a plain postgresql:// URL may pick psycopg 3, whose server-side parameters break its NOTIFY)."""
    instance = Settings(settings.sqlite_path, _database(database), settings.external_conninfo)
    params = conninfo_to_dict(conninfo(instance))  # creates the database on first use
    user, password = quote(str(params.get("user", "postgres")), safe=""), params.get("password")
    auth = f"{user}:{quote(str(password), safe='')}" if password else user
    host, port, name = (
        params.get("host", "localhost"),
        params.get("port", "5432"),
        quote(instance.database, safe=""),
    )
    if host.startswith("/"):  # a Unix socket directory
        return f"postgresql+psycopg2://{auth}@/{name}?host={quote(host, safe='')}&port={port}"
    return f"postgresql+psycopg2://{auth}@{host}:{port}/{name}"


def instance_env(settings: Settings, database: str | None = None) -> dict[str, str]:
    """The variables that make a Dagster process use the shared instance (its database created)."""
    storage_url(settings, database)
    env = {"DAGSTER_HOME": str(DAGSTER_HOME)}
    if database or read_environment().get("DAGSTER_PG_DB"):
        env["DAGSTER_PG_DB"] = _database(database)
    return env


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
