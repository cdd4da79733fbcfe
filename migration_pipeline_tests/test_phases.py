"""The phases of the migrated database, broken with plain SQL as an operator or a stray script would.

Before the switch any change in PostgreSQL fails the checks it affects, saying what happened; after the
switch the app's logged writes keep them green (APP_PG_ROLES narrows whose writes count); after finalize
the app writes with no trigger and reverify stays green; a trigger-bypassing delete fails in every phase.
"""

from __future__ import annotations

import psycopg
import pytest

from migration_pipeline.connect.target import conninfo
from migration_pipeline.move import audit, changes, checksums, guard, phase
from migration_pipeline.move.load import load_table
from migration_pipeline.move.source import Snapshot
from migration_pipeline.switch import delta, finalize
from migration_pipeline.watch import loadgen

from .helpers import editable_copy, failures, migrate, silently, sqlite_exec


@pytest.fixture
def proven(conn, catalog, sample_db, tmp_path):
    migrate(conn, catalog, sample_db, "run-1", tmp_path)
    return tmp_path / "run-1.snapshot.db"


def as_operator(settings, statement: str, params: tuple = ()) -> None:
    """A plain statement from another session, as psql would send it (its own application_name)."""
    with psycopg.connect(conninfo(settings), application_name="psql-operator", autocommit=True) as other:
        other.execute(statement, params)


def one_tweet(conn) -> str:
    return conn.execute("SELECT id FROM tweets WHERE metadata ? 'likes' ORDER BY id LIMIT 1").fetchone()[0]


BREAKS = {
    "deleted row": ("tweets", "DELETE FROM tweets WHERE id = (SELECT max(id) FROM tweets)", "DELETE",
                    {"rows_conserved", "content_parity"}),
    "changed JSON value": ("tweets", "UPDATE tweets SET metadata = jsonb_set(metadata, '{likes}', '-1')"
                           " WHERE id = %s", "UPDATE", {"content_parity", "jsonb_fidelity"}),
    "timestamp +1 s": ("tweets", "UPDATE tweets SET created_at = created_at + interval '1 second' WHERE id = %s",
                       "UPDATE", {"content_parity"}),
    "inserted foreign row": ("users", "INSERT INTO users (id, username) VALUES ('intruder', 'intruder')", "INSERT",
                             {"rows_conserved", "content_parity"}),
    "truncated table": ("funnel_completion", "TRUNCATE funnel_completion", "TRUNCATE",
                        {"rows_conserved", "content_parity"}),
    "updated username": ("users", "UPDATE users SET username = username || '_x' WHERE id = (SELECT min(id) FROM users)",
                         "UPDATE", {"content_parity"}),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BREAKS))
def test_before_the_switch_a_plain_sql_change_fails_the_checks(name, conn, catalog, proven, settings):
    assert failures(conn, catalog, proven) == {}
    table, statement, verb, expected = BREAKS[name]
    as_operator(settings, statement, (one_tweet(conn),) if "%s" in statement else ())
    found = failures(conn, catalog, proven)
    assert {check for t, check in found if t == table} >= expected, found
    said = " ".join(found[(table, "content_parity")])
    assert f"changed by {verb}" in said and "by role postgres" in said, said
    assert "application_name 'psql-operator'" in said and "client 127.0.0.1" in said, said
    assert "not a write of the app (the database is migrated" in said and "re-load the table" in said
    # the way back: a full re-load of the table
    with Snapshot(proven) as snap:
        load_table(conn, snap, catalog, table, "reload")
    assert failures(conn, catalog, proven) == {}


def test_the_app_query_check_compares_rows_changed_before_the_switch(conn, catalog, proven, settings):
    as_operator(settings, "UPDATE users SET username = username || '_x'")
    found = failures(conn, catalog, proven)
    assert ("users", "app_user_lookup") in found, found


def test_after_the_switch_the_apps_writes_keep_the_checks_green(conn, catalog, proven, settings):
    phase.declare(conn, phase.SWITCHED, by="test", note="app pointed at PostgreSQL")
    result = loadgen.run(conninfo(settings), concurrency=4, seconds=2.0)
    assert not result.errors and result.total > 20
    assert sum(changes.size(conn).values()) > 0
    assert failures(conn, catalog, proven) == {}
    # a change made before the switch stays unexplained after it
    assert phase.current(conn).name == phase.SWITCHED


def test_the_apps_writes_are_hashed_alike_whatever_its_session_settings(conn, catalog, proven, settings):
    """The triggers render rows without fixed settings (a SET clause would tax every write): an app whose
    sessions use another time zone and date style still keeps the proof exact."""
    phase.declare(conn, phase.SWITCHED, by="test")
    tweet = one_tweet(conn)
    with psycopg.connect(conninfo(settings), autocommit=True) as app:
        app.execute("SET TimeZone = 'Pacific/Chatham'")
        app.execute("SET DateStyle = 'SQL, DMY'")
        app.execute("SET IntervalStyle = 'sql_standard'")
        app.execute("UPDATE tweets SET created_at = created_at + interval '1 hour' WHERE id = %s", (tweet,))
        app.execute(
            "INSERT INTO tweets (id, user_id, text, created_at) SELECT 'tz-tweet', id, 'late', '2024-02-29 23:59:59.5'"
            " FROM users ORDER BY id LIMIT 1"
        )
    assert failures(conn, catalog, proven) == {}
    as_operator(
        settings, "UPDATE tweets SET created_at = created_at + interval '1 microsecond' WHERE id = 'tz-tweet'"
    )
    phase.declare(conn, phase.MIGRATED, by="test")  # now nobody may write: both changes are caught
    assert ("tweets", "content_parity") in failures(conn, catalog, proven)


@pytest.mark.parametrize("version", [checksums.LEGACY, checksums.V2])
def test_a_baseline_recorded_by_an_earlier_version_is_still_verified(
    conn, catalog, proven, settings, version
):
    """rowmd5-v1 (rows rendered under fixed settings) and rowmd5-v2 (md5 of the row's text) baselines stay
    verifiable as they were taken, with the triggers installed alongside them; a sync refuses to carry
    them forward."""
    spec = catalog.table("tweets")
    load = audit.latest_load(conn, "tweets")
    columns = checksums.Checksum.parse(load["checksum"]).columns
    legacy = checksums.table_checksum(conn, spec, columns, version)
    assert legacy.total != checksums.table_checksum(conn, spec, columns).total
    with conn.transaction():
        conn.execute(
            "UPDATE migration_audit.table_loads SET checksum = %s WHERE run_id = %s AND table_name = 'tweets'",
            (str(legacy), load["run_id"]),
        )
        changes.install(conn, spec, columns, version)
    assert failures(conn, catalog, proven) == {}
    with pytest.raises(delta.DeltaError, match=f"recorded a {version} checksum"):
        delta._check_preconditions(conn, catalog, load["snapshot_sha256"])
    phase.declare(conn, phase.SWITCHED, by="test")
    with psycopg.connect(conninfo(settings), autocommit=True) as app:
        app.execute("SET TimeZone = 'America/New_York'")
        app.execute(
            "UPDATE tweets SET created_at = created_at + interval '1 day' WHERE id = %s", (one_tweet(conn),)
        )
    assert failures(conn, catalog, proven) == {}
    phase.declare(conn, phase.MIGRATED, by="test")
    assert ("tweets", "content_parity") in failures(conn, catalog, proven)


UNSEEN = {  # changes a checksum built from the columns' hashes by a linear sum, or from jsonb's hash, would miss
    "texts swapped between two tweets": "UPDATE tweets t SET text = o.text FROM tweets o"
    " WHERE t.id IN ('odd-a', 'odd-b') AND o.id IN ('odd-a', 'odd-b') AND t.id <> o.id",
    "JSON containers regrouped, scalars in order": "UPDATE tweets SET metadata = '{\"a\": [[1, 2]]}' WHERE id = 'odd-a'",
    # 2^34 + 4 microseconds flip bit 2 of both halves of this moment's 64 bits: timestamptz's own hash,
    # which xors the halves, is unchanged
    "timestamp moved by 2^34 + 4 microseconds": "UPDATE tweets SET created_at = created_at"
    " + interval '17179869188 microseconds' WHERE id = 'odd-b'",
}  # fmt: skip


@pytest.mark.parametrize("name", list(UNSEEN))
def test_a_change_the_log_misses_fails_the_checksum(name, conn, catalog, sample_db, tmp_path):
    """What the change log does not see (triggers off, like a restore or a rogue writer) shows in the
    checksum alone: also values swapped between rows, JSON regrouped, a timestamp whose 64 bits fold to
    the same 32."""
    source = editable_copy(sample_db, tmp_path / "odd.db")
    sqlite_exec(source, "INSERT INTO tweets (id, user_id, text, created_at, metadata) VALUES"
         " ('odd-a', 'u0', 'first', '2024-03-05 17:21:08', '{\"a\": [[1], 2]}'),"
         " ('odd-b', 'u0', 'second', '2024-03-05 17:21:08', NULL)")  # fmt: skip
    migrate(conn, catalog, source, "run-1", tmp_path)
    snapshot = tmp_path / "run-1.snapshot.db"
    assert failures(conn, catalog, snapshot) == {}
    silently(conn, UNSEEN[name])
    assert ("tweets", "content_parity") in failures(conn, catalog, snapshot)


def test_a_change_before_the_declaration_stays_unexplained(conn, catalog, proven, settings):
    as_operator(settings, "DELETE FROM tweets WHERE id = (SELECT max(id) FROM tweets)")
    phase.declare(conn, phase.SWITCHED, by="test")
    found = failures(conn, catalog, proven)
    assert ("tweets", "rows_conserved") in found
    assert "made before the switch was declared" in " ".join(found[("tweets", "rows_conserved")])


def test_app_pg_roles_catch_a_write_by_another_role(conn, catalog, proven, settings, database, monkeypatch):
    monkeypatch.setenv("APP_PG_ROLES", "postgres")
    phase.declare(conn, phase.SWITCHED, by="test")
    loadgen.run(conninfo(settings), concurrency=2, seconds=1.0)
    assert failures(conn, catalog, proven) == {}
    role = f"night_operator_{database[-6:]}"  # roles are cluster-wide: one per test database
    conn.execute(f"CREATE ROLE {role}")
    try:
        conn.execute(f"GRANT USAGE ON SCHEMA migration_audit TO {role}")
        conn.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public, migration_audit TO {role}")
        conn.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA migration_audit TO {role}")
        with psycopg.connect(conninfo(settings), application_name="psql", autocommit=True) as other:
            other.execute(f"SET ROLE {role}")
            other.execute("UPDATE tweets SET text = 'fixed by hand' WHERE id = %s", (one_tweet(conn),))
        found = failures(conn, catalog, proven)
        assert ("tweets", "content_parity") in found, found
        said = " ".join(found[("tweets", "content_parity")])
        assert f"by role {role}" in said and "as postgres" in said, said
    finally:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_withdrawing_the_switch_makes_the_apps_writes_unexplained(conn, catalog, proven, settings):
    phase.declare(conn, phase.SWITCHED, by="test")
    with Snapshot(proven) as snap, pytest.raises(phase.PhaseError, match="withdraw the switch first"):
        load_table(conn, snap, catalog, "tweets", "too-late")
    loadgen.run(conninfo(settings), concurrency=2, seconds=1.0)
    phase.declare(conn, phase.MIGRATED, by="test", note="fell back to SQLite")
    assert ("tweets", "rows_conserved") in failures(conn, catalog, proven)
    # Allowed again, and the way back. Reloading removes what the app wrote during the switch; a busy
    # second can be over half of tweets, which the operator confirms as they would here.
    confirmed = guard.ShrinkPolicy(confirmed=frozenset({guard.ALL_TABLES}), confirmed_by=("test",))
    with Snapshot(proven) as snap:
        for table in catalog.names:
            load_table(conn, snap, catalog, table, "run-2", policy=confirmed)
    assert failures(conn, catalog, proven) == {}


def test_finalize_removes_the_log_and_reverify_stays_green(conn, catalog, proven, settings):
    with pytest.raises(phase.PhaseError, match="finalize follows the switch"):
        finalize.finalize(conn, catalog, run_id="too-early")
    phase.declare(conn, phase.SWITCHED, by="test")
    loadgen.run(conninfo(settings), concurrency=2, seconds=1.0)
    recorded = finalize.finalize(conn, catalog, run_id="fin-1", by="test", note="soak ended")
    assert set(recorded) == set(catalog.names)
    assert phase.current(conn).name == phase.FINALIZED
    assert not any(changes.installed(conn, t) for t in catalog.names)
    result = loadgen.run(conninfo(settings), concurrency=4, seconds=2.0)
    assert not result.errors and result.total > 20
    assert changes.size(conn) == {}  # no trigger: the app's writes cost nothing
    assert failures(conn, catalog, proven) == {}
    # a trigger-bypassing delete of a parent leaves orphans: integrity catches it
    silently(conn, "DELETE FROM users WHERE id = (SELECT user_id FROM tweets ORDER BY id LIMIT 1)")
    assert ("tweets", "referential_integrity") in failures(conn, catalog, proven)


def test_resuming_the_log_follows_writes_exactly_again(conn, catalog, proven, settings):
    phase.declare(conn, phase.SWITCHED, by="test")
    finalize.finalize(conn, catalog, run_id="fin-1", by="test")
    loadgen.run(conninfo(settings), concurrency=2, seconds=1.0)  # unlogged: the app's own, after finalize
    finalize.resume(conn, catalog, run_id="resume-1", by="test")
    assert all(changes.installed(conn, t) for t in catalog.names)
    loadgen.run(conninfo(settings), concurrency=2, seconds=1.0, seed=2)
    assert failures(conn, catalog, proven) == {}
    base = conn.execute(
        "SELECT why FROM migration_audit.proof_baselines WHERE run_id = 'resume-1' AND table_name = 'tweets'"
    ).fetchone()
    assert base == ("change log resumed",)
    silently(conn, "DELETE FROM tweets WHERE id = (SELECT max(id) FROM tweets)")
    assert ("tweets", "rows_conserved") in failures(conn, catalog, proven)


def test_finalize_refuses_while_the_proof_fails(conn, catalog, proven):
    phase.declare(conn, phase.SWITCHED, by="test")
    silently(conn, "DELETE FROM tweets WHERE id = (SELECT max(id) FROM tweets)")
    with pytest.raises(phase.PhaseError, match="while the proof fails.*tweets.rows_conserved"):
        finalize.finalize(conn, catalog, run_id="fin-1")
    assert phase.current(conn).name == phase.SWITCHED and changes.installed(conn, "tweets")


def test_compaction_keeps_the_net_effect_and_the_evidence(conn, catalog, proven, settings):
    phase.declare(conn, phase.SWITCHED, by="test")
    victim = one_tweet(conn)
    for n in range(5):  # the app edits one tweet five times: ten entries, net one removed and one added
        conn.execute("UPDATE tweets SET text = %s WHERE id = %s", (f"edit {n}", victim))
    conn.execute("INSERT INTO users (id, username) VALUES ('brief', 'brief')")
    conn.execute("DELETE FROM users WHERE id = 'brief'")  # added then removed: nothing left
    loadgen.run(conninfo(settings), concurrency=2, seconds=1.0)

    def net(table):  # what the checks use: rows added less removed, hashes added less removed
        found = changes.summary(conn, table)
        return found.added - found.removed, found.added_hash - found.removed_hash

    before = {t: net(t) for t in catalog.names}
    removed = sum(changes.compact(conn, t) for t in catalog.names)
    assert removed >= 8 + 2
    assert {t: net(t) for t in catalog.names} == before
    entries = conn.execute(
        "SELECT op FROM migration_audit.row_changes WHERE row_key = %s ORDER BY id", (victim,)
    ).fetchall()
    assert entries == [("D",), ("I",)]
    assert failures(conn, catalog, proven) == {}
