"""The cutover with the app writing: catch-up syncs while a writer process changes SQLite, a freeze,
the final sync, the proof; afterwards both sides are identical to what a full load gives."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import pytest

from migration_pipeline.connect.target import conninfo
from migration_pipeline.move import phase
from migration_pipeline.samples.sample_data import generate
from migration_pipeline.switch import cutover, delta
from migration_pipeline.watch import loadgen

from .helpers import migrate
from .test_delta import _outcome, other_conn  # noqa: F401 (fixture)
from .test_phases import failures


def _writer(path, *extra):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "migration_pipeline.samples.app_writer",
            "--db",
            str(path),
            "--seconds",
            "120",
            *extra,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def _stop(writer) -> int:
    writer.send_signal(signal.SIGINT)
    try:
        out, _ = writer.communicate(timeout=30)
    except KeyboardInterrupt:  # pragma: no cover
        raise
    return int(out.split()[0]) if out.strip() else 0


@pytest.mark.slow
@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_cutover_with_a_writer_ends_identical(conn, other_conn, catalog, tmp_path, journal_mode, settings):  # noqa: F811
    source = generate(tmp_path / "app.db", users=300, tweets=3_000, bad_fraction=0.01, with_queue=True,
                      journal_mode=journal_mode)  # fmt: skip
    writer = _writer(source, "--pause", "0.002")
    try:
        migrate(conn, catalog, source, "full", tmp_path)  # the full copy while the app writes
        baseline = tmp_path / "full.snapshot.db"
        freeze = tmp_path / "freeze"
        made: list[int] = []

        def log(message: str) -> None:
            if message.startswith("waiting for"):  # the operator stops the app, then signals
                made.append(_stop(writer))
                freeze.touch()

        result = cutover.run(
            conn, catalog, source, baseline, "cut-1", small_rows=5, max_rounds=3, signal=freeze, timeout_s=60,
            log=log,
        )  # fmt: skip
    finally:
        if writer.poll() is None:
            _stop(writer)
    assert made and made[0] > 50  # the app really wrote throughout
    assert result.rounds and sum(r.changed_rows for r in result.rounds) > 0
    assert result.failures == [] and result.freeze_seconds is not None
    state, verified, freeze_seconds = conn.execute(
        "SELECT state, verified, freeze_seconds FROM migration_audit.cutovers WHERE run_id = 'cut-1'"
    ).fetchone()
    assert (
        verified and state.startswith("verified") and freeze_seconds == pytest.approx(result.freeze_seconds)
    )

    migrate(other_conn, catalog, source, "fresh", tmp_path)
    assert _outcome(conn, catalog) == _outcome(other_conn, catalog)  # contents, checksums, quarantine

    # the verified cutover declared the switch: the app's writes to PostgreSQL keep the proof green
    now = phase.current(conn)
    assert now.name == phase.SWITCHED and now.run_id == "cut-1"
    assert not loadgen.run(conninfo(settings), concurrency=4, seconds=2.0).errors
    assert failures(conn, catalog, baseline) == {}


@pytest.mark.slow
def test_writes_during_the_final_sync_are_caught(conn, catalog, sample_db, tmp_path):
    source = tmp_path / "app.db"
    source.write_bytes(sample_db.read_bytes())
    migrate(conn, catalog, source, "full", tmp_path)
    baseline = tmp_path / "full.snapshot.db"
    writer = _writer(source)  # never stops: the operator forgot the app
    try:
        threading.Event().wait(0.5)
        with pytest.raises(cutover.CutoverError, match="changed during the final sync"):
            cutover.final_sync(conn, catalog, source, baseline, "cut-2", frozen_at=0.0)
    finally:
        _stop(writer)
    assert not delta.changeset_path(baseline).exists()
