"""A wrong source can never empty the target: a source lacking the app's tables and a load removing
too much of a table are refused before anything commits, unless the operator confirms the shrink,
which the audit trail records."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg import sql

from migration_pipeline.connect.settings import ConfigError, load_settings
from migration_pipeline.move.guard import ShrinkPolicy, ShrinkRefused
from migration_pipeline.move.load import load_all, load_table
from migration_pipeline.move.source import Snapshot, SourceError, take_snapshot
from migration_pipeline.switch import delta

from .helpers import editable_copy, fingerprint, migrate, sqlite_exec


def state(conn, catalog) -> dict:
    """Every migrated table's content fingerprint, and the audit trail's size."""
    tables = {name: fingerprint(conn, name) for name in catalog.names}
    loads = conn.execute("SELECT count(*) FROM migration_audit.table_loads").fetchone()[0]
    return {"tables": tables, "table_loads": loads}


def keys(conn, table: str, key: str = "id") -> set:
    return {
        r[0]
        for r in conn.execute(sql.SQL("SELECT {} FROM {}").format(sql.Identifier(key), sql.Identifier(table)))
    }


@pytest.fixture
def migrated(conn, catalog, sample_db, tmp_path):
    migrate(conn, catalog, sample_db, "run-1", tmp_path)
    return state(conn, catalog)


def one_percent_of_tweets(sample_db: Path, dest: Path) -> Path:
    source = editable_copy(sample_db, dest)
    sqlite_exec(source, "DELETE FROM tweets WHERE rowid % 100 <> 0")
    return source


# --- which tables the source must have ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["empty file", "no users table"])
def test_a_source_without_the_apps_tables_is_refused_before_anything_is_written(
    conn, catalog, sample_db, tmp_path, kind
):
    if kind == "empty file":
        source = tmp_path / "typo.db"
        source.write_bytes(b"")
        expected = "it is an empty file"
    else:
        source = editable_copy(sample_db, tmp_path / "half.db")
        sqlite_exec(source, "DROP TABLE users")
        expected = "it has only: analysis_chunks, analysis_queue, funnel_completion"
    info = take_snapshot(source, tmp_path / "s.db")
    with Snapshot(info.path) as snap, pytest.raises(SourceError) as refused:
        load_all(conn, snap, catalog, "run-wrong")
    message = str(refused.value)
    assert f"SQLite source {source.resolve()} lacks the app's table(s) users" in message
    assert expected in message and "SQLITE_PATH" in message and "\n" not in message
    # nothing was written: not even the schema
    assert conn.execute(
        "SELECT to_regclass('public.users'), to_regnamespace('migration_audit')"
    ).fetchone() == (
        None,
        None,
    )
    with Snapshot(info.path) as snap, pytest.raises(SourceError, match="lacks the app's table"):
        load_table(conn, snap, catalog, "users", "run-wrong")  # a table loaded on its own too


def test_only_the_queue_tables_may_be_absent(conn, catalog, sample_db, migrated, tmp_path):
    source = editable_copy(sample_db, tmp_path / "noqueue.db")
    sqlite_exec(source, "DROP TABLE analysis_chunks", "DROP TABLE analysis_queue")
    info = take_snapshot(source, tmp_path / "s.db")
    with Snapshot(info.path) as snap:
        # the tables may be absent, but emptying them is still a shrink to confirm
        with pytest.raises(ShrinkRefused, match="analysis_queue"):
            load_all(conn, snap, catalog, "run-nq")
        assert state(conn, catalog) == migrated
        results = load_all(conn, snap, catalog, "run-nq", ShrinkPolicy(confirmed=frozenset({"*"})))
    assert not results["analysis_queue"].source_present and results["analysis_queue"].loaded_rows == 0
    assert results["tweets"].loaded_rows > 0 and results["tweets"].removed_rows == 0


# --- the shrink guard ---------------------------------------------------------------------------------


def test_a_source_with_one_percent_of_the_tweets_is_refused_and_changes_nothing(
    conn, catalog, sample_db, migrated, tmp_path
):
    before = conn.execute("SELECT count(*) FROM tweets").fetchone()[0]
    source = one_percent_of_tweets(sample_db, tmp_path / "one-percent.db")
    info = take_snapshot(source, tmp_path / "s.db")
    with Snapshot(info.path) as snap:
        # before any table is loaded: a lower bound from the counts
        bound = before - info.tables["tweets"]
        with pytest.raises(
            ShrinkRefused, match=rf"at least {bound:,} of the {before:,} rows of tweets"
        ) as err:
            load_all(conn, snap, catalog, "run-1pct")
        assert "ALLOW_SHRINK=tweets" in str(err.value) and str(source.resolve()) in str(err.value)
        assert state(conn, catalog) == migrated
        # the table's own load decides on the exact number, before it commits
        old = keys(conn, "tweets")
        with pytest.raises(ShrinkRefused, match=r"it would remove \d[\d,]* of the") as err:
            load_table(conn, snap, catalog, "tweets", "run-1pct")
        assert state(conn, catalog) == migrated
        confirmed = load_table(
            conn, snap, catalog, "tweets", "run-1pct", policy=ShrinkPolicy(confirmed=frozenset({"tweets"}))
        )
    removed = len(old - keys(conn, "tweets"))
    assert f"remove {removed:,} of the {before:,} rows of tweets" in str(err.value)
    assert (
        confirmed.removed_rows == removed
        and confirmed.loaded_rows
        == conn.execute("SELECT count(*) FROM tweets").fetchone()[0]
        <= len(old) // 50
    )


def test_confirmed_shrink_is_recorded_in_the_audit_trail(conn, catalog, sample_db, migrated, tmp_path):
    before = conn.execute("SELECT count(*) FROM tweets").fetchone()[0]
    source = one_percent_of_tweets(sample_db, tmp_path / "one-percent.db")
    info = take_snapshot(source, tmp_path / "s.db")
    settings = load_settings({"ALLOW_SHRINK": "tweets"}, cwd=tmp_path)
    with Snapshot(info.path) as snap:
        results = load_all(conn, snap, catalog, "run-ok", ShrinkPolicy.of(settings))
    assert results["tweets"].loaded_rows == conn.execute("SELECT count(*) FROM tweets").fetchone()[0] <= 30
    rows = conn.execute(
        "SELECT table_name, removed_rows, shrink_confirmed FROM migration_audit.table_loads WHERE run_id = 'run-ok'"
    ).fetchall()
    audit = {table: (removed, confirmed) for table, removed, confirmed in rows}
    removed, confirmation = audit.pop("tweets")
    assert removed == results["tweets"].removed_rows == before - results["tweets"].loaded_rows
    assert confirmation["confirmed_by"] == ["ALLOW_SHRINK"]
    assert confirmation["tables"] == {"tweets": {"before": before, "removed": removed, "via": None}}
    assert set(audit.values()) == {(0, None)}  # the other tables lost nothing


def test_a_parent_load_cascading_away_most_of_a_child_is_refused(conn, catalog, tmp_path):
    """A user owning most tweets leaves the source: users loses one row, but its load would cascade
    away most of the tweets, in the same transaction; the count check before the loads cannot see it."""
    from migration_pipeline.samples.sample_data import generate

    source = generate(tmp_path / "app.db", users=50, tweets=500, bad_fraction=0)
    sqlite_exec(source, "UPDATE tweets SET user_id = 'u10' WHERE rowid % 5 <> 0")
    migrate(conn, catalog, source, "run-1", tmp_path)
    before = state(conn, catalog)
    owned = conn.execute("SELECT count(*) FROM tweets WHERE user_id = 'u10'").fetchone()[0]
    total = conn.execute("SELECT count(*) FROM tweets").fetchone()[0]
    sqlite_exec(source, "DELETE FROM users WHERE id = 'u10'")
    info = take_snapshot(source, tmp_path / "s.db")
    with Snapshot(info.path) as snap:
        with pytest.raises(ShrinkRefused) as err:
            load_all(conn, snap, catalog, "run-2")
        assert state(conn, catalog) == before
        assert f"{owned:,} of the {total:,} rows of tweets" in str(err.value)
        assert "through its foreign key to users" in str(err.value) and "ALLOW_SHRINK=tweets" in str(
            err.value
        )
        users = load_table(
            conn, snap, catalog, "users", "run-2", policy=ShrinkPolicy(confirmed=frozenset({"tweets"}))
        )
    assert users.removed_rows == 1 and users.cascaded_deletes["tweets"] == owned
    recorded = conn.execute(
        "SELECT shrink_confirmed FROM migration_audit.table_loads WHERE run_id = 'run-2' AND table_name = 'users'"
    ).fetchone()[0]
    assert recorded["tables"] == {"tweets": {"before": total, "removed": owned, "via": "users"}}
    assert recorded["confirmed_by"] == ["the caller's policy"]


def test_a_source_of_the_same_size_with_other_keys_is_refused(conn, catalog, sample_db, migrated, tmp_path):
    """Another database with as many rows: the counts agree, but every tweet would be replaced."""
    source = editable_copy(sample_db, tmp_path / "other.db")
    sqlite_exec(source, "UPDATE tweets SET id = 'other-' || id")
    info = take_snapshot(source, tmp_path / "s.db")
    with Snapshot(info.path) as snap, pytest.raises(ShrinkRefused, match="rows of tweets \\(100%\\)"):
        load_all(conn, snap, catalog, "run-other")
    assert state(conn, catalog)["tables"] == migrated["tables"]


def test_max_shrink_share_sets_the_limit(conn, catalog, sample_db, migrated, tmp_path):
    source = editable_copy(sample_db, tmp_path / "smaller.db")
    sqlite_exec(source, "DELETE FROM tweets WHERE rowid % 10 < 3")  # 30% of the tweets
    info = take_snapshot(source, tmp_path / "s.db")
    strict = ShrinkPolicy.of(load_settings({"MAX_SHRINK_SHARE": "0.2"}, cwd=tmp_path))
    with Snapshot(info.path) as snap:
        with pytest.raises(ShrinkRefused, match="MAX_SHRINK_SHARE=0.2"):
            load_all(conn, snap, catalog, "run-strict", strict)
        assert state(conn, catalog) == migrated
        old = keys(conn, "tweets")
        results = load_all(conn, snap, catalog, "run-default")  # within the default half
    assert results["tweets"].removed_rows == len(old - keys(conn, "tweets")) > 0.2 * len(old)
    assert results["tweets"].shrink_confirmed is None


def test_shrink_settings_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="MAX_SHRINK_SHARE"):
        load_settings({"MAX_SHRINK_SHARE": "50%"}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="MAX_SHRINK_SHARE"):
        load_settings({"MAX_SHRINK_SHARE": "1.5"}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="tweet$"):
        ShrinkPolicy.of(load_settings({"ALLOW_SHRINK": "users, tweet"}, cwd=tmp_path))
    policy = ShrinkPolicy.of(load_settings({"ALLOW_SHRINK": "users"}, cwd=tmp_path), run_config="tweets")
    assert policy.confirmed == {"users", "tweets"} and policy.max_share == 0.5
    assert policy.confirmed_by == ("ALLOW_SHRINK", "run config allow_shrink")
    assert ShrinkPolicy.of(load_settings({"ALLOW_SHRINK": "all"}, cwd=tmp_path)).confirms("funnel_progress")


def test_a_delta_sync_from_another_file_is_refused(conn, catalog, sample_db, tmp_path):
    """A sync applies what changed in the file the tables were loaded from: from any other file (a wrong
    SQLITE_PATH, another copy) it would apply the difference between two files."""
    source = editable_copy(sample_db, tmp_path / "app.db")
    migrate(conn, catalog, source, "full-1", tmp_path)
    before = state(conn, catalog)
    other = one_percent_of_tweets(sample_db, tmp_path / "other.db")
    baseline = tmp_path / "full-1.snapshot.db"
    with pytest.raises(delta.DeltaError, match=f"loaded from {source.resolve()}, not from {other}"):
        delta.sync(conn, catalog, other, baseline, "sync-1")
    assert state(conn, catalog) == before and not delta.changeset_path(baseline).exists()


def test_the_migrate_assets_refuse_and_take_the_run_configs_confirmation(
    conn, database, catalog, sample_db, migrated, tmp_path
):
    """In Dagster: the snapshot asset refuses the source before any table loads (the previous snapshot
    stays); the ``allow_shrink`` run config of the ``migration`` resource confirms the shrink."""
    from dagster import DagsterInstance, materialize

    from migration_pipeline.defs.connect import MigrationResource
    from migration_pipeline.defs.move import source_snapshot, table_asset

    source = one_percent_of_tweets(sample_db, tmp_path / "one-percent.db")
    resource = MigrationResource(sqlite_path=str(source), pg_database=database)
    assets = [source_snapshot, table_asset(catalog.table("tweets"))]
    instance = DagsterInstance.ephemeral()
    refused = materialize(assets, resources={"migration": resource}, instance=instance, raise_on_error=False)
    assert not refused.success and not resource.snapshot_path.exists()
    [failure] = [e for e in refused.all_events if e.is_step_failure]
    assert failure.step_key == "sqlite__snapshot" and "ALLOW_SHRINK=tweets" in str(
        failure.step_failure_data.error
    )
    assert state(conn, catalog) == migrated
    # run config for a resource replaces the fields set in code: give the source and target again
    pinned = {"sqlite_path": str(source), "pg_database": database}
    confirm = {"resources": {"migration": {"config": {**pinned, "allow_shrink": "tweets"}}}}
    done = materialize(assets, resources={"migration": resource}, instance=instance, run_config=confirm)
    assert done.success
    removed, confirmation = conn.execute(
        "SELECT removed_rows, shrink_confirmed FROM migration_audit.table_loads WHERE run_id = %s",
        (done.run_id,),
    ).fetchone()
    assert confirmation["confirmed_by"] == ["run config allow_shrink"] and removed > 2_600
