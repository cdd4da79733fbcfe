"""``quarantine list|export|ack``: the rows the latest loads quarantined, for people."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ..connect.settings import load_settings
from ..connect.target import connect
from ..prove import quarantined
from .commands import table_names


@click.group()
def quarantine() -> None:
    """The rows the latest loads quarantined: list them, export them for the app team, acknowledge them."""


@quarantine.command("list")
@click.argument("tables", nargs=-1)
@click.option("--limit", default=20, show_default=True, help="Rows shown per table.")
def quarantine_list(tables: tuple[str, ...], limit: int) -> None:
    """Counts per table, and the first rows: source key, column, reason, offending value."""
    names = table_names(tables)
    terminal = Console() if sys.stdout.isatty() else None
    with connect(load_settings()) as conn:
        counts = quarantined.counts(conn, names)
        for table in names:
            if counts[table] or tables:
                click.echo(f"{table}: {counts[table]:,} quarantined")
            if not counts[table]:
                continue
            rows = list(quarantined.rows(conn, [table], limit))
            if terminal is not None:  # a table on a terminal, plain lines otherwise
                grid = Table("source key", "column", "value", "reason", show_lines=False)
                for row in rows:
                    grid.add_row(
                        row["source_key"], row["column_name"] or "-", repr(row["value"])[:60], row["reason"]
                    )
                terminal.print(grid)
            else:
                for row in rows:
                    click.echo(
                        f"  {row['source_key']}  {row['column_name'] or '-'}  {repr(row['value'])[:60]}  {row['reason']}"
                    )
            if counts[table] > limit:
                click.echo(f"  ... {counts[table] - limit:,} more (quarantine export)")
        click.echo(f"total: {sum(counts.values()):,} quarantined rows")


@quarantine.command("export")
@click.argument("tables", nargs=-1)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The file to write.")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "jsonl"]), default=None, help="Default: from --out."
)
def quarantine_export(tables: tuple[str, ...], out: Path, fmt: str | None) -> None:
    """Write every quarantined row (with its raw values and reason) as CSV or JSON Lines."""
    fmt = fmt or ("jsonl" if out.suffix in (".jsonl", ".json", ".ndjson") else "csv")
    with connect(load_settings()) as conn:
        written = quarantined.export(conn, table_names(tables), out, fmt)
    click.echo(f"wrote {written:,} quarantined rows to {out} ({fmt})")


@quarantine.command("ack")
@click.argument("tables", nargs=-1)
def quarantine_ack(tables: tuple[str, ...]) -> None:
    """Record the quarantined rows as seen: the quarantine check then warns only of rows quarantined anew."""
    with connect(load_settings()) as conn:
        done = quarantined.acknowledge(conn, table_names(tables), getpass.getuser())
    for table, n in done.items():
        if n:
            click.echo(f"{table}: {n:,} quarantined rows acknowledged")
    click.echo(f"acknowledged {sum(done.values()):,} rows (recorded in migration_audit.quarantine_seen)")
