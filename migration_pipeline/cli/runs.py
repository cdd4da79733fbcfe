"""Dagster runs started from the command line, recorded in the instance the UI reads, and their summary.

In:  a job name of the code location (``migration_pipeline.definitions``), its run config, optionally the
     assets to materialize.
Out: :func:`shared_instance` is the PostgreSQL-backed Dagster instance of ``dagster_home/dagster.yaml``
     (the embedded server's or the configured one's), or a throw-away one when ``MIGRATION_INSTANCE`` is
     ``ephemeral``; :func:`run_job` runs a job there, the same job ``dagster job execute`` runs, showing
     its steps as they finish, and returns a :class:`RunSummary` read back from the instance's event log.
Fails: DagsterInvariantViolationError and friends for a job or asset that does not exist; a failed run
     is a summary with ``ok`` False, not an exception.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    RunsFilter,
    execute_job,
)
from dagster._core.definitions.reconstruct import ReconstructableRepository

from ..connect.instance import instance_env
from ..connect.local_postgres import state_dir
from ..connect.settings import load_settings

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # the events still reach the instance
STARTED_BY = "migration_pipeline/started_by"


def shared_instance() -> DagsterInstance:
    """The instance ``make ui`` shows (its ``DAGSTER_*`` variables set in this process for the steps)."""
    if os.environ.get("MIGRATION_INSTANCE", "").lower() == "ephemeral":
        return DagsterInstance.local_temp()
    os.environ.update(instance_env(load_settings()))
    return DagsterInstance.get()


@dataclass
class RunSummary:
    run_id: str
    job: str
    ok: bool
    materialized: dict[str, dict] = field(default_factory=dict)  # asset path -> its metadata values
    checks: Counter[str] = field(default_factory=Counter)  # passed / warned / failed
    failed_checks: list[str] = field(default_factory=list)
    warned_checks: list[str] = field(default_factory=list)
    failed_steps: list[str] = field(default_factory=list)
    log: Path | None = None  # the run's Dagster log lines (all of them are in the instance too)


def run_job(
    instance: DagsterInstance,
    name: str,
    run_config: dict | None = None,
    assets: list[AssetKey] | None = None,
    progress=None,
    tags: dict[str, str] | None = None,
) -> RunSummary:
    """Run job ``name`` in ``instance`` (with ``tags``); ``progress(step_key, status)`` is called as
    steps finish."""
    # the job as `dagster job execute -m migration_pipeline.definitions -j NAME` finds it (the step
    # processes of the multiprocess executor rebuild it from this pointer)
    recon = ReconstructableRepository.for_module(
        "migration_pipeline.definitions", "defs"
    ).get_reconstructable_job(name)
    config = {**QUIET, **(run_config or {})}
    done = threading.Event()
    tag = os.urandom(8).hex()
    watcher = threading.Thread(target=_watch, args=(instance, tag, done, progress), daemon=True)
    if progress is not None:
        watcher.start()
    log = _log_path(name)
    try:
        with _stderr_to(log):
            result = execute_job(
                recon,
                instance,
                run_config=config,
                tags={**(tags or {}), STARTED_BY: tag},
                asset_selection=assets,
            )
    finally:
        done.set()
        if watcher.is_alive():
            watcher.join()
    summary = summarize(instance, result.run_id, name)
    summary.log = log
    return summary


def _log_path(job: str) -> Path:
    logs = state_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return logs / f"{time.strftime('%Y%m%d-%H%M%S')}-{job.strip('_').lower()}.log"


@contextmanager
def _stderr_to(path: Path):
    """Send this process's stderr, and so its step processes' Dagster log lines, to ``path``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _watch(instance: DagsterInstance, tag: str, done: threading.Event, progress) -> None:
    """Report steps as they succeed or fail (the run is found by its tag once created)."""
    seen, run_id = set(), None
    steps = {DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}
    while True:
        finished = done.wait(0.5)
        if run_id is None:
            runs = instance.get_runs(RunsFilter(tags={STARTED_BY: tag}), limit=1)
            run_id = runs[0].run_id if runs else None
        for record in instance.all_logs(run_id, of_type=steps) if run_id else ():
            event = record.dagster_event.event_type
            if (record.step_key, event) not in seen:
                seen.add((record.step_key, event))
                progress(record.step_key, "done" if event == DagsterEventType.STEP_SUCCESS else "FAILED")
        if finished:
            return


def summarize(instance: DagsterInstance, run_id: str, job: str) -> RunSummary:
    """What the run did, read from the instance (what the UI shows)."""
    run = instance.get_run_by_id(run_id)
    summary = RunSummary(run_id, job, ok=run is not None and run.is_success)
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None:
            continue
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.event_specific_data.materialization
            summary.materialized[materialization.asset_key.to_user_string()] = {
                k: getattr(v, "value", v) for k, v in materialization.metadata.items()
            }
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            label = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
            if evaluation.passed:
                summary.checks["passed"] += 1
            elif evaluation.severity.value == "WARN":
                summary.checks["warned"] += 1
                summary.warned_checks.append(label)
            else:
                summary.checks["failed"] += 1
                summary.failed_checks.append(label)
        elif event.event_type == DagsterEventType.STEP_FAILURE:
            summary.failed_steps.append(record.step_key)
    return summary


def lines(summary: RunSummary) -> list[str]:
    """The summary as a few lines of text for a terminal or a log."""
    tables = {
        k.removeprefix("postgres/"): m for k, m in summary.materialized.items() if k.startswith("postgres/")
    }
    out = [f"{summary.job}: {'succeeded' if summary.ok else 'FAILED'} (run {summary.run_id})"]
    synced = {t: m for t, m in tables.items() if m.get("mode") == "delta"}
    if summary.job == "sync" or synced:
        out.append(f"sync: {len(synced)} table(s) changed")
        for table, m in synced.items():
            fresh = int(m.get("newly_quarantined") or 0)
            out.append(
                f"  {table}: {m['rows_inserted']:,} inserted, {m['rows_updated']:,} updated, "
                f"{m['rows_deleted']:,} deleted" + (f", WARNING {fresh:,} newly quarantined" if fresh else "")
            )
    elif tables:
        loaded = sum(int(m.get("loaded_rows") or 0) for m in tables.values())
        quarantined = {t: int(m.get("rejected_rows") or 0) for t, m in tables.items()}
        out.append(
            f"tables: {len(tables)} loaded, {loaded:,} rows; quarantined {sum(quarantined.values()):,}"
            + (
                " (" + ", ".join(f"{t} {n:,}" for t, n in quarantined.items() if n) + ")"
                if any(quarantined.values())
                else ""
            )
        )
    if summary.checks:
        c = summary.checks
        out.append(f"checks: {c['passed']} passed, {c['warned']} warned, {c['failed']} failed")
        out += [f"  failed: {label}" for label in summary.failed_checks]
        out += [f"  warned: {label}" for label in summary.warned_checks]
    out += [f"  failed step: {step}" for step in summary.failed_steps]
    if summary.log is not None:
        out.append(f"log: {summary.log}")
    for key, name in (
        ("audit/verification_report", "verification"),
        ("audit/provenance", "provenance"),
        ("audit/app_performance", "app performance"),
    ):
        if summary.materialized.get(key, {}).get("path"):
            out.append(f"{name} report: {summary.materialized[key]['path']}")
    return out
