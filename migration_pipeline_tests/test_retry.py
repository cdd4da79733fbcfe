"""``quarantine retry``: quarantined rows are exported, corrected and re-admitted through the same rules,
with the audit trail, exact conservation and green checks; a correction lasts across syncs and new
snapshots until the app itself changes the row; a row still bad stays quarantined with its new reason.
All through the command line, as an operator does it, against the embedded PostgreSQL."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from migration_pipeline.connect.target import connect

from .helpers import editable_copy, sqlite_exec
from .test_cli import _cli, _env

pytestmark = pytest.mark.slow

BAD_JSON, BAD_DATE, NEW = "retry-bad-json", "retry-bad-date", "retry-new"


def _ok(done) -> str:
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout


def _tweet(conn, key: str):
    return conn.execute("SELECT metadata, created_at FROM tweets WHERE id = %s", (key,)).fetchone()


def _reason(conn, key: str) -> str | None:
    """Why the latest load of tweets quarantined ``key`` (None: it did not)."""
    row = conn.execute(
        "SELECT r.reason FROM migration_audit.rejected_rows r JOIN migration_audit.table_loads l"
        " USING (run_id, table_name) WHERE r.table_name = 'tweets' AND r.source_key = %s"
        " AND l.finished_at = (SELECT max(finished_at) FROM migration_audit.table_loads"
        " WHERE table_name = 'tweets')",
        (key,),
    ).fetchone()
    return None if row is None else row[0]


def _conserved(conn) -> tuple[int, int, int]:
    source, loaded, rejected = conn.execute(
        "SELECT source_rows, loaded_rows, rejected_rows FROM migration_audit.table_loads"
        " WHERE table_name = 'tweets' ORDER BY finished_at DESC LIMIT 1"
    ).fetchone()
    assert source == loaded + rejected
    (stored,) = conn.execute("SELECT count(*) FROM tweets").fetchone()
    assert stored == loaded
    return source, loaded, rejected


@pytest.mark.timeout(600)  # six Dagster runs from the command line: about 200 s alone on 2 cores
def test_quarantined_rows_are_corrected_and_readmitted(server, settings, sample_db, tmp_path):
    app = editable_copy(sample_db, tmp_path / "app.db")
    with sqlite3.connect(app) as db:
        (user,) = db.execute("SELECT id FROM users ORDER BY rowid LIMIT 1").fetchone()
        db.executemany(
            "INSERT INTO tweets (id, user_id, text, created_at, metadata) VALUES (?, ?, 'x', ?, ?)",
            [
                (BAD_JSON, user, "2024-01-01 10:00:00", '{"lang": "en"'),  # the app's truncated JSON
                (BAD_DATE, user, "someday", "{}"),
            ],
        )
    db.close()
    env = _env(SQLITE_PATH=str(app), PG_DATABASE=settings.database, MIGRATION_INSTANCE="ephemeral")
    _ok(_cli(["migrate"], env, tmp_path))
    with connect(settings) as conn:
        assert "invalid JSON" in _reason(conn, BAD_JSON) and "someday" in _reason(conn, BAD_DATE)
        before = _conserved(conn)
        (loaded_key,) = conn.execute("SELECT id FROM tweets LIMIT 1").fetchone()

    # a row that is not quarantined cannot be "corrected": nothing is recorded
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(
        json.dumps({"table_name": "tweets", "source_key": loaded_key, "raw_row": {"text": "z"}}) + "\n"
    )
    done = _cli(["quarantine", "retry", "--file", str(wrong)], env, tmp_path)
    assert done.returncode == 2 and "is not among the rows the latest load quarantined" in done.stderr, done
    garbled, unknown = tmp_path / "garbled.jsonl", tmp_path / "unknown.jsonl"
    garbled.write_text('{"table_name": "tweets", "source_key"\n')
    unknown.write_text(
        json.dumps({"table_name": "tweets", "source_key": BAD_JSON, "raw_row": {"nope": 1}}) + "\n"
    )
    for path, message in ((garbled, "cannot read corrections from"), (unknown, "no column nope")):
        done = _cli(["quarantine", "retry", "--file", str(path)], env, tmp_path)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done
    with connect(settings) as conn:
        assert conn.execute("SELECT count(*) FROM migration_audit.quarantine_corrections").fetchone() == (0,)

    # the operator exports the quarantine, corrects two rows (one still wrong), and retries the file
    export = tmp_path / "quarantine.jsonl"
    _ok(_cli(["quarantine", "export", "tweets", "--out", str(export)], env, tmp_path))
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    fixes = []
    for line in lines:
        if line["source_key"] == BAD_JSON:
            line["raw_row"]["metadata"] = '{"lang": "en"}'
        elif line["source_key"] == BAD_DATE:
            line["raw_row"] = {"created_at": "still not a date"}  # only the columns that change
        fixes.append(line)  # the other rows unchanged: skipped
    corrected = tmp_path / "corrected.jsonl"
    corrected.write_text("".join(json.dumps(f) + "\n" for f in fixes))
    out = _ok(
        _cli(["quarantine", "retry", "tweets", "--file", str(corrected), "--by", "alice"], env, tmp_path)
    )
    assert f"tweets: {len(lines) - 2:,} rows given unchanged (left quarantined)" in out, out
    assert "re-admitted 1 rows; 1 still quarantined" in out, out
    assert "checks: " in out and " 0 failed" in out, out  # the table's checks ran in the retry's run
    with connect(settings) as conn:
        assert _tweet(conn, BAD_JSON)[0] == {"lang": "en"}
        assert _reason(conn, BAD_JSON) is None
        assert "still not a date" in _reason(conn, BAD_DATE)  # its new reason
        after = _conserved(conn)
        assert after == (before[0], before[1] + 1, before[2] - 1)
        trail = conn.execute(
            "SELECT source_key, state, corrected_by, correction_from, run_id, outcome FROM"
            " migration_audit.quarantine_corrections ORDER BY source_key"
        ).fetchall()
        (latest_run,) = conn.execute(
            "SELECT run_id FROM migration_audit.table_loads WHERE table_name = 'tweets'"
            " ORDER BY finished_at DESC LIMIT 1"
        ).fetchone()
    assert [(k, s, b) for k, s, b, *_ in trail] == [
        (BAD_DATE, "quarantined", "alice"),
        (BAD_JSON, "admitted", "alice"),
    ]
    assert all(str(corrected.resolve()) in t[3] and "sha256" in t[3] and t[4] == latest_run for t in trail)
    history = _ok(_cli(["quarantine", "corrections", "tweets"], env, tmp_path))
    assert "2 corrections" in history and f"{BAD_JSON} by alice: admitted" in history, history
    assert any(line.startswith("verification report: ") for line in out.splitlines()), out  # refreshed
    provenance = _ok(_cli(["provenance", "--table", "tweets"], env, tmp_path))
    assert (
        "**Corrected**: 2 quarantined rows corrected by an operator: 1 admitted, 1 quarantined" in provenance
    )

    # the correction lasts: a sync of other changes, then a full migration from a new snapshot
    with sqlite3.connect(app) as db:
        db.execute(
            "INSERT INTO tweets (id, user_id, text, created_at) VALUES (?, ?, 'y', '2024-02-02 10:00:00')",
            (NEW, user),
        )
    db.close()
    synced = _ok(_cli(["sync"], env, tmp_path))
    assert "  tweets: 1 inserted, 0 updated, 0 deleted" in synced.splitlines(), synced
    _ok(_cli(["migrate"], env, tmp_path))
    with connect(settings) as conn:
        assert _tweet(conn, BAD_JSON)[0] == {"lang": "en"} and _tweet(conn, NEW) is not None
        assert "still not a date" in _reason(conn, BAD_DATE)

    # the app team fixes the other row in a copy of the file: re-read just that key from it
    fixed = tmp_path / "fixed.db"
    shutil.copyfile(app, fixed)
    sqlite_exec(fixed, f"UPDATE tweets SET created_at = '2024-03-03 09:00:00' WHERE id = '{BAD_DATE}'")
    out = _ok(
        _cli(["quarantine", "retry", "tweets", "--from-sqlite", str(fixed), "--key", BAD_DATE], env, tmp_path)
    )
    assert "re-admitted 1 rows; 0 still quarantined" in out, out
    with connect(settings) as conn:
        assert _tweet(conn, BAD_DATE)[1].year == 2024 and _reason(conn, BAD_DATE) is None

    # once the app itself changes a corrected row, its version wins
    sqlite_exec(app, f"""UPDATE tweets SET metadata = '{{"lang": "fr"}}' WHERE id = '{BAD_JSON}'""")
    synced = _ok(_cli(["sync"], env, tmp_path))
    assert "  tweets: 0 inserted, 1 updated, 0 deleted" in synced.splitlines(), synced
    with connect(settings) as conn:
        assert _tweet(conn, BAD_JSON)[0] == {"lang": "fr"}
        _conserved(conn)
