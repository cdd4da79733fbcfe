"""``migration-pipeline``: the operator's command line, thin over the same jobs and functions as the UI.

Commands that move or check data start Dagster runs of the code location's jobs in the instance the UI
reads (runs.py); the others read the target directly. Each ends with a short summary.

Exit codes: 0 done (and, for runs, every blocking check passed); 1 a run or a blocking check failed;
2 a usage error; 3 the target or the instance cannot be reached or is misconfigured, or holds no migration yet.
"""

from __future__ import annotations

import sys

import click
import psycopg

from ..connect.settings import ConfigError, redact
from ..connect.target import TargetError
from . import commands, quarantine, server


class _Group(click.Group):
    """Turns a configuration or connection problem, or a target nothing was migrated into yet, into exit
    code 3 and a one-line, secret-free message."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (ConfigError, TargetError) as err:
            click.echo(f"error: {redact(str(err))}", err=True)
            sys.exit(3)
        except psycopg.errors.UndefinedTable as err:
            if "migration_audit." not in str(err):
                raise
            click.echo(
                f"error: the target has no migration yet ({str(err).splitlines()[0]}): run "
                "`migration-pipeline migrate` first (or check PG_DATABASE / PG_DSN)",
                err=True,
            )
            sys.exit(3)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def app() -> None:
    """Move the app's SQLite database into PostgreSQL, prove nothing was lost, switch over, watch.

    Configuration comes from the environment or ./.env.migration (SQLITE_PATH, PG_DSN or PG_*; with
    neither, the embedded PostgreSQL). Runs are recorded in the Dagster instance `make ui` shows
    (MIGRATION_INSTANCE=ephemeral for a throw-away one).

    Exit codes: 0 done; 1 a run or a blocking check failed; 2 usage error; 3 cannot reach or use the
    target or the instance.
    """


for command in commands.COMMANDS:
    app.add_command(command)
app.add_command(quarantine.quarantine)
app.add_command(server.server)
app.add_command(server.ui)
app.add_command(server.env)


def main() -> None:
    app()
