"""The cutover runbook: catch up while the app writes, a short write freeze, a final sync, the proof.

In:  a target connection, the catalog, the app's SQLite file and the baseline snapshot of the last full
     load (see delta.py), and how to run: when the remaining delta is small enough, how many catch-up
     rounds at most, the file whose appearance says "the app's writes are stopped".
Out: :func:`catch_up` syncs until a round moves at most ``small_rows`` rows; :func:`wait_for_freeze`
     waits for the signal file; :func:`final_sync` runs the last sync and proves that the source did not
     change while it read (its files unchanged from before the read to after the commit), timing the
     freeze from the signal to the sync's commit in PostgreSQL; :func:`verify` runs every blocking check
     and the app's queries against the synced baseline. Each step records itself in
     ``migration_audit.cutovers``, whose ``state`` says where an aborted cutover left things.
Fails: :class:`CutoverError` when writes did not stop, the signal never came, or a check failed; each
     sync is one transaction, so PostgreSQL is never left half-synced, whatever step fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from ..catalog import Catalog
from ..connect.local_postgres import state_dir
from ..move import phase
from ..prove import behaviour, proof
from . import delta

Log = Callable[[str], None]


class CutoverError(RuntimeError):
    """The cutover cannot go on; its message says what state it left."""


@dataclass
class Round:
    run_id: str
    changed_rows: int
    seconds: float


@dataclass
class Cutover:
    run_id: str
    rounds: list[Round] = field(default_factory=list)
    freeze_seconds: float | None = None  # from the freeze signal to the final sync's commit
    final: delta.SyncResult | None = None
    failures: list[tuple[str, str, list[str]]] = field(default_factory=list)


def _activity(source: Path) -> tuple:
    """What any write to the app's database changes: size and mtime of the file and its side files."""
    state = []
    for suffix in ("", "-wal", "-journal"):
        path = Path(f"{source}{suffix}")
        stat = path.stat() if path.exists() else None
        state.append((stat.st_size, stat.st_mtime_ns) if stat else None)
    return tuple(state)


def record(conn: psycopg.Connection, run_id: str, source: Path, state: str, **numbers) -> None:
    """Upsert the cutover's row: its state for an operator, and the numbers so far."""
    conn.execute(
        """
        INSERT INTO migration_audit.cutovers (run_id, source_path, state) VALUES (%s, %s, %s)
        ON CONFLICT (run_id) DO UPDATE SET state = EXCLUDED.state, updated_at = CURRENT_TIMESTAMP
        """,
        (run_id, str(Path(source).resolve()), state),
    )
    for column, value in numbers.items():  # column names are this module's own literals
        conn.execute(f"UPDATE migration_audit.cutovers SET {column} = %s WHERE run_id = %s", (value, run_id))


def catch_up(
    conn: psycopg.Connection,
    catalog: Catalog,
    source: Path,
    baseline: Path,
    run_id: str,
    *,
    small_rows: int,
    max_rounds: int,
    log: Log = print,
) -> list[Round]:
    """Sync while the app writes until a round moves at most ``small_rows`` rows (or ``max_rounds``)."""
    rounds: list[Round] = []
    for number in range(1, max_rounds + 1):
        result = delta.sync(conn, catalog, source, baseline, f"{run_id}-catch-up-{number}")
        rounds.append(Round(result.run_id, result.changed_rows, result.seconds))
        log(f"catch-up round {number}: {result.changed_rows:,} changed rows synced in {result.seconds:.2f} s")
        record(conn, run_id, source, f"caught up (round {number}); the app still writes to SQLite",
               rounds=number, last_round_rows=result.changed_rows)  # fmt: skip
        if result.changed_rows <= small_rows:
            break
    else:
        log(f"the delta is still above {small_rows:,} rows after {max_rounds} rounds: freezing anyway")
    return rounds


def freeze_signal(path: Path | None, run_started: float, log: Log = print) -> Path:
    """The file whose appearance says the app's writes are stopped (default ``.local/cutover/freeze``). One
    older than this run (``run_started``, epoch seconds) is left from an earlier cutover: it is removed, so it
    cannot freeze this one unannounced."""
    signal = path if path is not None else state_dir() / "cutover" / "freeze"
    signal.parent.mkdir(parents=True, exist_ok=True)
    if signal.exists() and signal.stat().st_mtime < run_started:
        signal.unlink()
        log(f"removed a freeze signal older than this run: {signal}")
    return signal


def wait_for_freeze(signal: Path | None, *, timeout_s: float, log: Log = print) -> float:
    """Return the moment (epoch seconds) the app's writes are stopped: at once without a signal file,
    else when ``signal`` appears."""
    if signal is None:
        log("writes declared stopped: final sync now")
        return time.time()
    log(f"waiting for {signal}: create it once the app's writes are stopped")
    deadline = time.monotonic() + timeout_s
    while not signal.exists():
        if time.monotonic() > deadline:
            raise CutoverError(
                f"no freeze signal {signal} within {timeout_s:.0f} s; state: PostgreSQL is synced up to "
                "the last catch-up round, the app still writes to SQLite; nothing to undo"
            )
        time.sleep(0.05)
    return time.time()


def final_sync(
    conn: psycopg.Connection,
    catalog: Catalog,
    source: Path,
    baseline: Path,
    run_id: str,
    frozen_at: float,
    log: Log = print,
) -> tuple[delta.SyncResult, float]:
    """The last sync, during the freeze; (its result, seconds the app's writes were frozen until
    PostgreSQL held everything: from ``frozen_at``, epoch seconds, to the sync's commit)."""
    record(conn, run_id, source, "frozen: final sync running; the app must not write")
    before = _activity(source)
    result = delta.sync(conn, catalog, source, baseline, f"{run_id}-final")
    freeze = time.time() - frozen_at - result.baseline_seconds  # the baseline is ours: no need to wait
    if _activity(source) != before:
        record(conn, run_id, source, "aborted: the app wrote during the final sync; it stays on SQLite")
        raise CutoverError(
            "the app's database changed during the final sync: its writes were not stopped. State: "
            "PostgreSQL holds what the sync read; resume the app on SQLite, or stop its writes and run "
            "the cutover again (nothing is lost either way)"
        )
    record(conn, run_id, source, "synced: the app may switch to PostgreSQL now (the checks follow its "
           "writes there); verifying", freeze_seconds=freeze, final_rows=result.changed_rows)  # fmt: skip
    log(f"final sync: {result.changed_rows:,} rows; writes frozen {freeze:.2f} s")
    return result, freeze


def verify(
    conn: psycopg.Connection, catalog: Catalog, source: Path, baseline: Path, run_id: str
) -> list[tuple[str, str, list[str]]]:
    """Every blocking check and app query of every table against the synced baseline; raises
    CutoverError with the failures (and records them) unless all pass."""
    failures = []
    blocking = {c.name for c in proof.CHECKS if c.blocking}
    for table in catalog.names:
        for outcome in proof.run(conn, catalog, table, baseline):
            if outcome.name in blocking and not outcome.passed:
                failures.append((table, outcome.name, list(outcome.problems)))
    failures += [
        (c.table, o.name, list(o.problems)) for c, o in behaviour.run(conn, catalog, baseline) if not o.passed
    ]
    if failures:
        record(
            conn, run_id, source, "verification FAILED: keep (or put back) the app on SQLite", verified=False
        )
        raise CutoverError(f"verification failed: {failures[:5]}; keep (or put back) the app on SQLite")
    record(conn, run_id, source, "verified: the app runs on PostgreSQL; SQLite stays as the fallback",
           verified=True)  # fmt: skip
    # from now on the app's writes to PostgreSQL are explained by the change log
    phase.declare(conn, phase.SWITCHED, run_id=run_id, note=f"cutover {run_id}: final sync verified")
    return failures


def run(
    conn: psycopg.Connection,
    catalog: Catalog,
    source: Path,
    baseline: Path,
    run_id: str,
    *,
    small_rows: int = 1_000,
    max_rounds: int = 10,
    signal: Path | None = None,
    timeout_s: float = 3_600,
    log: Log = print,
) -> Cutover:
    """The whole runbook (what the ``cutover`` job does, step by step, without Dagster)."""
    cutover = Cutover(run_id)
    record(conn, run_id, source, "started")
    cutover.rounds = catch_up(
        conn, catalog, source, baseline, run_id, small_rows=small_rows, max_rounds=max_rounds, log=log
    )
    frozen_at = wait_for_freeze(signal, timeout_s=timeout_s, log=log)
    cutover.final, cutover.freeze_seconds = final_sync(
        conn, catalog, source, baseline, run_id, frozen_at, log
    )
    cutover.failures = verify(conn, catalog, source, baseline, run_id)
    return cutover
