"""``quarantine list|export|ack|retry|corrections``: the rows the latest loads quarantined, for people,
and their correction."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ..catalog import load_catalog
from ..connect.settings import load_settings
from ..connect.target import connect
from ..defs.report import PROVENANCE_KEY, VERIFICATION_KEY
from ..defs.tables import target_key
from ..move import correction_input, corrections, phase
from ..move.phase import PhaseError
from ..move.source import Snapshot, SourceError, default_snapshot_path
from ..prove import quarantined
from .commands import run, table_names


@click.group()
def quarantine() -> None:
    """The rows the latest loads quarantined: list them, export them for the app team, acknowledge them,
    re-admit them after a correction."""


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


@quarantine.command("retry")
@click.argument("tables", nargs=-1)
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Corrected rows in `quarantine export`'s format (CSV or JSON Lines): source_key and the corrected "
    "raw_row (columns left out keep their value); rows left unchanged are skipped.",
)
@click.option(
    "--from-sqlite",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A corrected SQLite file: the quarantined rows (of TABLES, or only --key) are read from it again.",
)
@click.option("--key", "keys", multiple=True, help="With --from-sqlite: only this source key (repeatable).")
@click.option(
    "--by", default=getpass.getuser(), show_default=True, help="Who corrects: the audit trail's name."
)
def quarantine_retry(
    tables: tuple[str, ...], file: Path | None, from_sqlite: Path | None, keys: tuple[str, ...], by: str
) -> None:
    """Re-admit quarantined rows after a correction: record it, then load the tables again (a Dagster run
    with their checks) through the same value rules and constraint checks. Rows still bad stay quarantined
    with their new reason; the correction lasts until the app itself changes the row."""
    if (file is None) == (from_sqlite is None):
        raise click.UsageError("give exactly one of --file or --from-sqlite")
    if keys and from_sqlite is None:
        raise click.UsageError("--key goes with --from-sqlite (a file names its keys itself)")
    settings, names = load_settings(), table_names(tables)
    baseline = default_snapshot_path(settings)
    with connect(settings) as conn:
        try:
            phase.require_migrated(conn, "re-admit quarantined rows")
            corrections.settle(conn, names)  # what earlier retries came to
            with Snapshot(baseline) as snapshot:
                if file is not None:
                    got = correction_input.from_file(conn, snapshot, file, names)
                else:
                    got = correction_input.from_sqlite(
                        conn, snapshot, load_catalog(), from_sqlite, names, keys
                    )
            for table, n in got.unchanged.items():
                click.echo(f"{table}: {n:,} rows given unchanged (left quarantined)")
            if not got.rows:
                click.echo("nothing to retry: no quarantined row was corrected")
                return
            ids = corrections.record(conn, baseline, got.rows, got.source, by)
        except (corrections.CorrectionError, SourceError, PhaseError) as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2 if isinstance(err, corrections.CorrectionError) else 1)
    touched = [t for t in names if any(c.table == t for c in got.rows)]
    click.echo(
        f"recorded {len(ids):,} corrections by {by} from {got.source}; loading {', '.join(touched)} again"
    )
    tags = {"migration/retry_by": by, "migration/corrections": ",".join(map(str, ids))}
    try:
        assets = [*(target_key(t) for t in touched), VERIFICATION_KEY, PROVENANCE_KEY]  # checks, reports
        run("migrate", assets=assets, label="quarantine retry", tags=tags)
    finally:
        with connect(settings) as conn:
            settled = [s for s in corrections.settle(conn, touched) if s["id"] in ids]
            left = sorted(set(ids) - {s["id"] for s in settled})
            if left:  # the load did not land: the rows stay as they were
                corrections.revert(conn, baseline, left, "its load failed")
                click.echo(f"{len(left):,} corrections not applied: the load failed (recorded as failed)")
        _outcomes(settled)


def _outcomes(settled: list[dict]) -> None:
    admitted = [s for s in settled if s["state"] == "admitted"]
    still = [s for s in settled if s["state"] == "quarantined"]
    if settled:
        click.echo(f"re-admitted {len(admitted):,} rows; {len(still):,} still quarantined")
    for s in still:
        click.echo(f"  still quarantined: {s['table']} {s['source_key']}: {s['reason']}")


@quarantine.command("corrections")
@click.argument("tables", nargs=-1)
def quarantine_corrections(tables: tuple[str, ...]) -> None:
    """The audit trail of corrections: who corrected which row, when, from what, and what came of it."""
    names = table_names(tables)
    with connect(load_settings()) as conn:
        corrections.settle(conn, names)
        trail = corrections.history(conn, names)
    for c in trail:
        outcome = c["state"] + (f" ({c['outcome']})" if c["outcome"] else "")
        click.echo(
            f"#{c['id']} {c['corrected_at']:%Y-%m-%d %H:%M:%S%z} {c['table_name']} {c['source_key']}"
            f" by {c['corrected_by']}: {outcome}; run {c['run_id'] or '-'}; from {c['correction_from']}"
        )
    click.echo(f"{len(trail):,} corrections (migration_audit.quarantine_corrections)")
