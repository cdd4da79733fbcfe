"""``server`` (the embedded PostgreSQL and the target's connection string), ``ui`` and ``env``."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

import click
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ..connect import local_postgres
from ..connect.instance import DAGSTER_HOME, instance_env
from ..connect.settings import load_settings
from ..connect.target import conninfo


def _target(show_password: bool) -> tuple[str, dict]:
    """The target's connection URI (password masked unless asked for) and its parameters."""
    params = conninfo_to_dict(conninfo(load_settings()))
    password = params.get("password") or ""
    shown = password if show_password else ("***" if password else "")
    auth = params.get("user", "") + (f":{shown}" if shown else "")
    uri = (
        f"postgresql://{auth}@{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params['dbname']}"
    )
    return uri, params


@click.group()
def server() -> None:
    """The embedded PostgreSQL (under ./.local/pg) and the target's connection string."""


@server.command()
def start() -> None:
    """Start the embedded server if it is not running (it keeps its port across restarts when free)."""
    params = local_postgres.ensure_running()
    click.echo(f"embedded PostgreSQL running on {params['host']}:{params['port']}")


@server.command()
def stop() -> None:
    """Stop the embedded server."""
    click.echo("stopped" if local_postgres.stop() else "not running")


@server.command()
@click.option("--show-password", is_flag=True, help="Print the password instead of ***.")
def status(show_password: bool) -> None:
    """Whether the target is up, and a ready-to-use connection string for psql or an app."""
    settings = load_settings()
    if settings.embedded:
        port = local_postgres.running_port()
        if port is None:
            click.echo("embedded PostgreSQL: not running (migration-pipeline server start)")
            sys.exit(1)
        click.echo(f"embedded PostgreSQL: running on 127.0.0.1:{port}")
    else:
        click.echo(f"configured server: {settings.describe()}")
    uri, _ = _target(show_password)
    click.echo(f"connection string: {uri}")
    if not show_password:
        click.echo("(password: --show-password, or `migration-pipeline server psql` to connect)")


@server.command(context_settings={"ignore_unknown_options": True})
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
def psql(psql_args: tuple[str, ...]) -> None:
    """Open psql on the target database (extra arguments go to psql, e.g. -c 'SELECT 1')."""
    _, params = _target(show_password=True)
    binary = shutil.which("psql") or str(local_postgres.POSTGRES_BIN_PATH / "psql")
    env = {**os.environ, "PGPASSWORD": params.pop("password", "")}  # never on the command line
    done = subprocess.run([binary, make_conninfo(**params), *psql_args], env=env, check=False)
    sys.exit(done.returncode)


@click.command()
@click.option("--port", default=3000, show_default=True, help="The UI's port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address it listens on.")
def ui(port: int, host: str) -> None:
    """The Dagster UI with its daemon (schedules, sensors), on the shared PostgreSQL-backed instance."""
    os.environ.update(instance_env(load_settings()))
    dagster = shutil.which("dagster", path=os.path.dirname(sys.executable)) or "dagster"
    click.echo(f"Dagster UI on http://{host}:{port} (runs stored in PostgreSQL, {DAGSTER_HOME})")
    sys.exit(
        subprocess.run(
            [dagster, "dev", "-m", "migration_pipeline.definitions", "-h", host, "-p", str(port)], check=False
        ).returncode
    )


@click.command()
def env() -> None:
    """Shell exports of the shared instance, for the dagster CLI: eval "$(migration-pipeline env)"."""
    for key, value in instance_env(load_settings()).items():
        click.echo(f"export {key}={shlex.quote(value)}")
