"""The embedded server's lifecycle, in a state directory of its own (not the checkout's shared one)."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

pytestmark = pytest.mark.slow

START = (
    "import json; from migration_pipeline.connect import local_postgres as lp; p = lp.ensure_running();"
    " print(json.dumps({'port': p['port'], 'password': p['password']}))"
)


def _python(code: str, state: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, "MIGRATION_STATE_DIR": state},
        stdout=subprocess.PIPE,
        text=True,
    )


def test_processes_starting_it_at_once_share_one_server(tmp_path):
    import json

    state = str(tmp_path / "state")
    starters = [_python(START, state) for _ in range(3)]
    results = [json.loads(p.communicate(timeout=180)[0]) for p in starters]
    try:
        assert all(p.returncode == 0 for p in starters)
        assert len({r["port"] for r in results}) == 1 and len({r["password"] for r in results}) == 1
        with psycopg.connect(host="127.0.0.1", port=results[0]["port"], user="postgres",
                             password=results[0]["password"], dbname="postgres") as conn:  # fmt: skip
            assert conn.execute("SHOW shared_preload_libraries").fetchone()[0] == "pg_stat_statements"
        with pytest.raises(psycopg.OperationalError):  # the password is required: no trust auth
            psycopg.connect(
                host="127.0.0.1",
                port=results[0]["port"],
                user="postgres",
                password="wrong",
                dbname="postgres",
            )
        again = _python(START, state)
        assert (
            json.loads(again.communicate(timeout=60)[0])["port"] == results[0]["port"]
        )  # reused, not restarted
    finally:
        stop = _python("from migration_pipeline.connect import local_postgres as lp; print(lp.stop())", state)
        assert stop.communicate(timeout=60)[0].strip() == "True"
    assert (tmp_path / "state" / "pg" / "password").stat().st_mode & 0o077 == 0
