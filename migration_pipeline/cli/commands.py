"""The commands that run the code location's jobs (as Dagster runs in the shared instance) or read the
target: migrate, verify, sync, cutover, switch, finalize, rollback, report, provenance, monitor, loadgen."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from dagster import AssetKey
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..catalog import load_catalog
from ..connect.settings import load_settings
from ..connect.target import connect, conninfo
from ..defs.tables import SNAPSHOT_KEY, target_key
from . import runs

ALL_ASSETS = "__ASSET_JOB"  # every asset with its checks: what `dagster asset materialize --select '*'` runs


def table_names(names: tuple[str, ...]) -> list[str]:
    """The catalog's tables among ``names`` in load order (all of them for none); a usage error for others."""
    catalog = load_catalog()
    unknown = [n for n in names if n not in catalog.names]
    if unknown:
        raise click.BadParameter(f"unknown table(s) {', '.join(unknown)}; known: {', '.join(catalog.names)}")
    return [n for n in catalog.names if n in names] if names else list(catalog.names)


def run(
    job: str,
    run_config: dict | None = None,
    assets: list[AssetKey] | None = None,
    label: str | None = None,
    tags: dict[str, str] | None = None,
) -> None:
    """Run ``job`` in the shared instance, show its steps as they finish, end with its summary; exit 1
    when the run or a blocking check failed."""
    instance = runs.shared_instance()
    label = label or job
    click.echo(f"{label}: starting (recorded in the Dagster instance; `migration-pipeline ui` shows it)")
    sys.stdout.flush()
    # the terminal as it is now: while the run goes, Dagster redirects this process's stdout and stderr
    with os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1) as console:
        if console.isatty():  # a spinner with the steps done and the time; each step's line above it
            terminal = Console(file=console)
            columns = (
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TextColumn("{task.completed} steps"),
            )
            with Progress(*columns, TimeElapsedColumn(), console=terminal) as bar:
                task = bar.add_task(label, total=None)

                def progress(step: str, status: str) -> None:
                    bar.console.print(f"  {'[green]done' if status == 'done' else '[red]FAILED'}[/]  {step}")
                    bar.update(task, advance=1, description=f"{label}: {step}")

                summary = runs.run_job(instance, job, run_config, assets, progress, tags)
        else:

            def progress(step: str, status: str) -> None:
                console.write(f"  {status:>6}  {step}\n")

            summary = runs.run_job(instance, job, run_config, assets, progress, tags)
    summary.job = label
    for line in runs.lines(summary):
        click.echo(line)
    if not summary.ok or summary.checks["failed"]:
        sys.exit(1)


@click.command()
@click.argument("tables", nargs=-1)
def migrate(tables: tuple[str, ...]) -> None:
    """Migrate every table (or only TABLES) with its checks, then the reports: the same run as
    `make run` and the UI's "Materialize all"."""
    if not tables:
        run(ALL_ASSETS, label="migrate")
        return
    selected = [SNAPSHOT_KEY, *(target_key(t) for t in table_names(tables))]
    run("migrate", assets=selected)


@click.command()
def verify() -> None:
    """Run every check against the target without moving data (the reverify job)."""
    run("reverify")


@click.command()
def sync() -> None:
    """Apply the app's changes since the last load (delta sync)."""
    run("sync")


@click.command()
@click.option("--writes-stopped", is_flag=True, help="The app's writes are already stopped: do not wait.")
def cutover(writes_stopped: bool) -> None:
    """The cutover runbook: catch up, wait for the write freeze, final sync, verify."""
    run("cutover", {"ops": {"wait_for_freeze": {"config": {"writes_stopped": writes_stopped}}}})


_WHO = [
    click.option(
        "--by", "declared_by", default="", help="Who declares it (default: the OS user at this host)."
    ),
    click.option("--note", default="", help="Why, for the audit trail (e.g. the change ticket)."),
]


def _who(command):
    for option in reversed(_WHO):
        command = option(command)
    return command


def _declared(job: str, op: str, declared_by: str, note: str) -> None:
    run(job, {"ops": {op: {"config": {"declared_by": declared_by, "note": note}}}})


@click.command()
@click.argument("action", type=click.Choice(["declare", "withdraw"]))
@_who
def switch(action: str, declared_by: str, note: str) -> None:
    """Declare that the app now writes to PostgreSQL, or withdraw that declaration (back on SQLite)."""
    _declared(f"{action}_switch", f"{action}_switch_op", declared_by, note)


@click.command()
@_who
def finalize(declared_by: str, note: str) -> None:
    """End the soak period: record the final proof baseline and remove the change log."""
    _declared("finalize", "finalize_op", declared_by, note)


@click.command()
@click.option("--out", required=True, type=click.Path(path_type=Path), help="A NEW SQLite file.")
@click.option("--no-quarantined", is_flag=True, help="Do not restore quarantined rows.")
def rollback(out: Path, no_quarantined: bool) -> None:
    """Export PostgreSQL to a new SQLite file in the app's format (the rollback_export job)."""
    config = {"out": str(out.resolve()), "include_quarantined": not no_quarantined}
    run("rollback_export", {"ops": {"export_to_sqlite": {"config": config}}})


@click.command()
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("verification-report.md"), show_default=True
)
def report(out: Path) -> None:
    """Write the verification report (every check of every table, for a change ticket)."""
    from ..prove import report as verification

    sys.exit(verification.main(["--out", str(out)]))


@click.command()
@click.option("--table", "tables", multiple=True, help="Only this table (repeatable).")
@click.option("--out", type=click.Path(path_type=Path), help="Write the Markdown here instead of stdout.")
def provenance(tables: tuple[str, ...], out: Path | None) -> None:
    """Where every table's rows came from: source file, snapshot, code version, runs."""
    from ..prove import provenance as origin

    args = [a for t in table_names(tables) for a in ("--table", t)] if tables else []
    sys.exit(origin.main(args + (["--out", str(out)] if out else [])))


@click.command("app-performance")
@click.option(
    "--concurrency",
    "levels",
    type=int,
    multiple=True,
    help="A concurrency level (repeatable; default 1, 4, 16).",
)
@click.option(
    "--seconds", type=float, default=10.0, show_default=True, help="Measured per backend and level."
)
@click.option(
    "--warmup", type=float, default=2.0, show_default=True, help="Unrecorded warm-up per backend and level."
)
def app_performance(levels: tuple[int, ...], seconds: float, warmup: float) -> None:
    """The app's workload on a copy of the SQLite file and on PostgreSQL, side by side (the app_performance
    job): p50/p95/p99 and errors per operation, the verdict and a chart on the asset audit/app_performance."""
    config = {"seconds": seconds, "warmup": warmup, **({"concurrency": list(levels)} if levels else {})}
    run("app_performance", {"ops": {"measure_app_performance": {"config": config}}}, label="app-performance")


@click.command()
def monitor() -> None:
    """Take one sample of the target's health (connections, transactions, queries) and print it."""
    import json

    from ..watch import monitor as health

    with connect(load_settings()) as conn:
        sample = health.take_sample(conn)
        alerts = health.evaluate(sample, health.Thresholds.from_env())
    click.echo(json.dumps({k: sample[k] for k in ("connections", "transactions")}, indent=2, default=str))
    for alert in alerts:
        click.echo(f"ALERT {alert.incident}: {alert.message}")
    click.echo(f"{len(alerts)} alert(s)")
    sys.exit(1 if alerts else 0)


@click.command()
@click.option("--concurrency", default=4, show_default=True)
@click.option("--seconds", default=10.0, show_default=True)
@click.option("--seed", default=1, show_default=True)
def loadgen(concurrency: int, seconds: float, seed: int) -> None:
    """Play the app's workload against the target (reads and writes in the app's proportions)."""
    from ..watch import loadgen as workload

    conninfo(load_settings())  # the database exists, or exit 3
    sys.exit(
        workload.main(["--concurrency", str(concurrency), "--seconds", str(seconds), "--seed", str(seed)])
    )


COMMANDS = [
    migrate,
    app_performance,
    verify,
    sync,
    cutover,
    switch,
    finalize,
    rollback,
    report,
    provenance,
    monitor,
    loadgen,
]
