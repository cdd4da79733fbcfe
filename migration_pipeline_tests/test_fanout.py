"""A big table loaded in rowid ranges (move/ranges.py, defs/fanout.py): any number of ranges and workers give
the content, quarantine and checksum of a single stream; a range that did not land keeps the old content,
and re-executing the Dagster run from failure lands only that range, then publishes."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time

import psycopg
import pytest
from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    Definitions,
    ReexecutionOptions,
    define_asset_job,
    execute_job,
    instance_for_test,
    reconstructable,
)

from migration_pipeline import definitions
from migration_pipeline.connect.target import connect, conninfo
from migration_pipeline.move import ranges, shadow
from migration_pipeline.move.load import load_table
from migration_pipeline.move.source import Snapshot, take_snapshot
from migration_pipeline.move.stage import LoadError
from migration_pipeline.samples.sample_data import generate

from .helpers import fingerprint


def _outcome(conn, run_id: str) -> tuple:
    """What a load of tweets left: the table, its quarantine and its recorded numbers and checksum."""
    rejected = conn.execute(
        "SELECT source_rowid, source_key, column_name, reason, kind, raw_row::text FROM migration_audit.rejected_rows"
        " WHERE run_id = %s AND table_name = 'tweets' ORDER BY source_rowid, kind",
        (run_id,),
    ).fetchall()
    recorded = conn.execute(
        "SELECT source_rows, loaded_rows, rejected_rows, checksum FROM migration_audit.table_loads"
        " WHERE run_id = %s AND table_name = 'tweets'",
        (run_id,),
    ).fetchone()
    return fingerprint(conn, "tweets"), rejected, recorded


@pytest.fixture
def snap(conn, catalog, sample_db, tmp_path):
    """The sample's snapshot, with users loaded (tweets' parent)."""
    info = take_snapshot(sample_db, tmp_path / "snapshot.db")
    with Snapshot(info.path) as snapshot:
        load_table(conn, snapshot, catalog, "users", "users")
        yield snapshot


def _fanned(conn, snapshot, catalog, run_id: str, rows_per_range: int, opened=None, jobs: int = 1) -> None:
    planned = ranges.prepare(conn, snapshot, catalog, "tweets", run_id, rows_per_range)
    for rng in reversed(planned):  # any order
        ranges.land(conn, snapshot, catalog, "tweets", run_id, rng, run_id)
    ranges.publish(conn, snapshot, catalog, "tweets", run_id, run_id, connect=opened, index_jobs=jobs)


class _Opened:
    """New connections to the test's database, counted (the index jobs' own)."""

    def __init__(self, settings):
        self.settings, self.count = settings, 0

    def __call__(self):
        self.count += 1
        return connect(self.settings)


def test_any_number_of_ranges_gives_what_one_stream_gives(conn, settings, catalog, snap):
    load_table(conn, snap, catalog, "tweets", "one")
    expected = _outcome(conn, "one")
    assert expected[1], "the sample has bad tweets: quarantine must be compared too"
    indexes = _indexes(conn)
    for rows, jobs in (
        (700, 1),
        (700, 3),
        (10**6, 2),
    ):  # five ranges, one range; indexes one by one or at once
        opened = _Opened(settings)
        _fanned(conn, snap, catalog, f"r{rows}-{jobs}", rows, opened, jobs)
        assert _outcome(conn, f"r{rows}-{jobs}") == expected and _indexes(conn) == indexes
        assert opened.count == (0 if jobs == 1 else 3)  # tweets' three indexes, each on its own connection
    left = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (shadow.SCHEMA,)).fetchall()
    assert left == [("loads",)]  # no shadow nor companions; the (empty) claims table stays


def _indexes(conn) -> list[tuple]:
    return conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'tweets'"
        " ORDER BY indexname"
    ).fetchall()


@pytest.mark.parametrize("jobs", [1, 3])
def test_a_row_no_index_can_hold_fails_the_early_build_not_the_load(
    conn, settings, catalog, sample_db, tmp_path, jobs
):
    """The indexes are built on the ranges' shadow before the publish; one a row cannot go into (a text
    too big for the full-text index) is left to the publish, which quarantines that row and builds it: the
    table, quarantine and indexes a single stream gives."""
    source = tmp_path / "huge.db"
    shutil.copyfile(sample_db, source)
    with sqlite3.connect(source) as db:
        db.execute(
            "INSERT INTO tweets (id, user_id, text, created_at) VALUES ('huge', 'u0', ?, 0)",
            (" ".join(f"w{i}" for i in range(250_000)),),
        )
    db.close()
    info = take_snapshot(source, tmp_path / "snapshot.db")
    with Snapshot(info.path) as snap:
        load_table(conn, snap, catalog, "users", "users")
        load_table(conn, snap, catalog, "tweets", "one")
        expected, indexes = _outcome(conn, "one"), _indexes(conn)
        assert any(row[1] == "huge" and "too long for tsvector" in row[3] for row in expected[1])
        planned = ranges.prepare(conn, snap, catalog, "tweets", "fanned", 1_000)
        for rng in planned:
            ranges.land(conn, snap, catalog, "tweets", "fanned", rng, "fanned")
        with conn.transaction():
            failed = shadow.build_indexes(conn, "tweets", _Opened(settings), jobs)
            assert failed == ["idx_tweets_text"]  # the btrees could be built
        built = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = 'tweets' ORDER BY 1",
            (shadow.SCHEMA,),
        )
        assert [name for (name,) in built] == ["idx_tweets_created", "idx_tweets_user_created"]
        ranges.publish(conn, snap, catalog, "tweets", "fanned", "fanned")
    assert _outcome(conn, "fanned") == expected and _indexes(conn) == indexes


def test_a_missing_range_keeps_the_old_content_until_it_lands(conn, catalog, snap):
    load_table(conn, snap, catalog, "tweets", "one")
    expected, oid = _outcome(conn, "one"), conn.execute("SELECT 'tweets'::regclass::oid").fetchone()[0]
    conn.execute("DELETE FROM tweets WHERE id IN (SELECT id FROM tweets ORDER BY id LIMIT 5)")
    conn.commit()
    changed = fingerprint(conn, "tweets")
    planned = ranges.prepare(conn, snap, catalog, "tweets", "load", 1_000)
    assert len(planned) == 3
    for rng in planned[:2]:
        ranges.land(conn, snap, catalog, "tweets", "load", rng, "first")
    with pytest.raises(LoadError, match="2 of 3 ranges landed"):
        ranges.publish(conn, snap, catalog, "tweets", "load", "first")
    assert fingerprint(conn, "tweets") == changed  # the old content, the same table
    assert conn.execute("SELECT 'tweets'::regclass::oid").fetchone()[0] == oid
    again = ranges.land(conn, snap, catalog, "tweets", "load", planned[0], "second")
    assert again.already and again.run_id == "first"  # landed before: not staged twice
    ranges.land(conn, snap, catalog, "tweets", "load", planned[2], "second")
    ranges.publish(conn, snap, catalog, "tweets", "load", "second")
    assert _outcome(conn, "second") == expected


def test_a_newer_load_supersedes_an_unfinished_one(conn, catalog, snap):
    planned = ranges.prepare(conn, snap, catalog, "tweets", "old", 1_000)
    ranges.land(conn, snap, catalog, "tweets", "old", planned[0], "old")
    load_table(conn, snap, catalog, "tweets", "newer")  # a single-stream load in between takes the shadow
    with pytest.raises(ranges.Superseded):
        ranges.land(conn, snap, catalog, "tweets", "old", planned[1], "old")
    conn.rollback()
    with pytest.raises(ranges.Superseded):
        ranges.publish(conn, snap, catalog, "tweets", "old", "old")


# --- through Dagster: two worker processes, a range killed, re-execution from failure -------------------


SELECTION = [
    AssetKey(["sqlite", "snapshot"]),
    AssetKey(["postgres", "users"]),
    AssetKey(["postgres", "tweets"]),
]


def _fan_job():
    """The migrate job's assets of tweets, without their checks (not under test here)."""
    base = definitions.defs
    job = define_asset_job("fan", selection=AssetSelection.assets(*SELECTION).without_checks())
    return Definitions(
        assets=list(base.assets), asset_checks=list(base.asset_checks), resources=base.resources, jobs=[job]
    ).resolve_job_def("fan")


def _kill_range(settings, index: int, stop: threading.Event) -> None:
    """Make range ``index``'s transaction wait at its end (a row of its number in the ranges table, held by
    an open transaction), then terminate its backend, as a server restart or an OOM kill would."""
    with (
        psycopg.connect(conninfo(settings), autocommit=True) as watcher,
        psycopg.connect(conninfo(settings)) as holder,
    ):
        while not stop.is_set():
            if watcher.execute("SELECT to_regclass('migration_stage.tweets__ranges')").fetchone()[0]:
                break
            time.sleep(0.01)
        holder.execute(
            "INSERT INTO migration_stage.tweets__ranges (index, source_rows, rejected_rows, run_id)"
            " VALUES (%s, 0, 0, 'test')",
            (index,),
        )
        while not stop.is_set():
            killed = watcher.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s"
                " AND wait_event_type = 'Lock' AND datname = current_database()",  # never another test's
                (f"migrate tweets {index}",),
            ).fetchall()
            if killed:
                break
            time.sleep(0.01)
        holder.rollback()


def test_resume_lands_only_the_ranges_that_did_not(settings, catalog, sample_db, tmp_path, monkeypatch):
    monkeypatch.setenv("SQLITE_PATH", str(sample_db))
    monkeypatch.setenv("PG_DATABASE", settings.database)
    monkeypatch.setenv("RANGE_ROWS", "1000")
    monkeypatch.setenv("SNAPSHOT_DIR", str(tmp_path / "shared"))
    stop = threading.Event()
    killer = threading.Thread(target=_kill_range, args=(settings, 1, stop))
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        killer.start()
        try:
            first = execute_job(reconstructable(_fan_job), instance)
        finally:
            stop.set()
            killer.join()
        assert not first.success
        failed = {e.step_key for e in first.all_events if e.event_type_value == "STEP_FAILURE"}
        assert failed == {"postgres__tweets.tweets__range[range_1]"}
        with psycopg.connect(conninfo(settings)) as conn:  # nothing published: no tweets yet
            assert conn.execute("SELECT count(*) FROM tweets").fetchone()[0] == 0
        second = execute_job(
            reconstructable(_fan_job),
            instance,
            reexecution_options=ReexecutionOptions.from_failure(first.run_id, instance),
        )
        assert second.success
        ran = {e.step_key for e in second.all_events if e.event_type_value == "STEP_SUCCESS"}
        assert {k for k in ran if "__range" in k} == {"postgres__tweets.tweets__range[range_1]"}
        assert "postgres__tweets.tweets__publish" in ran
    with (
        psycopg.connect(conninfo(settings)) as conn,
        Snapshot(next((tmp_path / "shared").glob("*.db"))) as snap,
    ):
        fanned = _outcome(conn, second.run_id)
        load_table(conn, snap, catalog, "tweets", "one")  # the same snapshot in one stream
        assert _outcome(conn, "one") == fanned


def test_an_empty_source_table_is_published_not_skipped(settings, tmp_path, monkeypatch):
    """No range to land is still a load: the publish step runs (Dagster runs a collect over zero dynamic
    outputs) and the table is materialized, empty, rather than left as it was."""
    source = generate(tmp_path / "empty.db", users=20, tweets=0)
    monkeypatch.setenv("SQLITE_PATH", str(source))
    monkeypatch.setenv("PG_DATABASE", settings.database)
    monkeypatch.setenv("SNAPSHOT_DIR", str(tmp_path / "shared"))
    run = _fan_job().execute_in_process(instance=DagsterInstance.ephemeral())
    done = {e.step_key for e in run.all_events if e.event_type_value == "STEP_SUCCESS"}
    assert "postgres__tweets.tweets__publish" in done
    [tweets] = [
        e for e in run.get_asset_materialization_events() if e.asset_key.path == ["postgres", "tweets"]
    ]
    assert tweets.materialization.metadata["source_rows"].value == 0
    assert tweets.materialization.metadata["ranges"].value == 0
