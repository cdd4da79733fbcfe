"""The checks pass on a clean migration and fail, for the right reason, on each deliberate break."""

from __future__ import annotations

import sqlite3

import pytest

from migration_pipeline.move import phase
from migration_pipeline.prove import proof

from .helpers import editable_copy, migrate, silently, sqlite_exec


@pytest.fixture
def proven(conn, catalog, sample_db, tmp_path):
    migrate(conn, catalog, sample_db, "run-1", tmp_path)
    return tmp_path / "run-1.snapshot.db"


def outcomes(conn, catalog, table, snapshot):
    return {o.name: o for o in proof.run(conn, catalog, table, snapshot)}


def test_clean_migration_passes_every_blocking_check(conn, catalog, proven):
    for table in catalog.names:
        found = outcomes(conn, catalog, table, proven)
        applicable = [c for group in proof.groups(catalog, table).values() for c in group]
        expected = {c.name for c in proof.CHECKS}
        if not any(c.kind == "jsonb" for c in catalog.table(table).columns):
            expected.discard("jsonb_fidelity")
        assert {c.name for c in applicable} == set(found) == expected
        for check in applicable:
            if check.blocking:
                assert found[check.name].passed, (table, check.name, found[check.name].problems)
    tweets = outcomes(conn, catalog, "tweets", proven)
    assert not tweets["quarantine"].passed  # a warning: the sample has quarantined tweets
    assert tweets["quarantine"].metadata["quarantined_rows_listed"] > 0
    assert tweets["jsonb_fidelity"].metadata["compared"] > 2_000
    assert (
        tweets["content_parity"].metadata["source_rows"] == tweets["rows_conserved"].metadata["loaded_rows"]
    )


def _first_tweet(conn) -> str:
    return conn.execute("SELECT min(id) FROM tweets WHERE metadata ? 'likes'").fetchone()[0]


def test_deleted_row(conn, catalog, proven):
    victim = _first_tweet(conn)
    silently(conn, "DELETE FROM tweets WHERE id = %s", (victim,))
    found = outcomes(conn, catalog, "tweets", proven)
    assert not found["rows_conserved"].passed and "the table holds" in found["rows_conserved"].description
    parity = found["content_parity"]
    assert not parity.passed
    assert parity.metadata["first_differences"][0] == {
        "key": victim,
        "difference": "missing from target",
        "columns": [],
    }


def test_changed_json_value(conn, catalog, proven):
    victim = _first_tweet(conn)
    silently(
        conn, "UPDATE tweets SET metadata = jsonb_set(metadata, '{likes}', '-1') WHERE id = %s", (victim,)
    )
    found = outcomes(conn, catalog, "tweets", proven)
    assert found["rows_conserved"].passed
    assert found["content_parity"].metadata["first_differences"] == [
        {"key": victim, "difference": "changed", "columns": ["metadata"]}
    ]
    fidelity = found["jsonb_fidelity"]
    assert not fidelity.passed and fidelity.metadata["mismatched"] == 1
    assert fidelity.metadata["mismatches"][0]["key"] == victim


def test_json_type_change_is_named(conn, catalog, proven):
    victim = _first_tweet(conn)
    silently(conn, "UPDATE tweets SET metadata = to_jsonb(metadata::text) WHERE id = %s", (victim,))
    fidelity = outcomes(conn, catalog, "tweets", proven)["jsonb_fidelity"]
    assert fidelity.metadata["mismatches"][0] == {
        "key": victim, "column": "metadata", "value_differs": True, "type_differs": True,
    }  # fmt: skip


def test_timestamp_shifted_by_one_second(conn, catalog, proven):
    victim = _first_tweet(conn)
    silently(conn, "UPDATE tweets SET created_at = created_at + interval '1 second' WHERE id = %s", (victim,))
    parity = outcomes(conn, catalog, "tweets", proven)["content_parity"]
    assert not parity.passed
    assert parity.metadata["first_differences"] == [
        {"key": victim, "difference": "changed", "columns": ["created_at"]}
    ]
    assert "created_at" in parity.description


def test_dropped_index(conn, catalog, proven):
    conn.execute("DROP INDEX idx_tweets_text")
    conforms = outcomes(conn, catalog, "tweets", proven)["schema_conforms"]
    assert not conforms.passed
    assert conforms.problems == ("missing index idx_tweets_text: "
                                 "CREATE INDEX idx_tweets_text ON tweets USING gin (to_tsvector('english'::regconfig, text))",)  # fmt: skip


def test_dropped_foreign_key_and_an_orphan(conn, catalog, proven):
    """The app (its write logged) inserts an orphan once the constraint is gone: the counts account for
    the write, but integrity and conformance fail. Silently inserted, the counts fail as well."""
    conn.execute("ALTER TABLE tweets DROP CONSTRAINT tweets_user_id_fkey")
    phase.declare(conn, phase.SWITCHED, by="test")  # the app writes to PostgreSQL
    conn.execute(
        "INSERT INTO tweets (id, user_id, text, created_at) VALUES ('orphan-1', 'nobody', 'x', now())"
    )
    found = outcomes(conn, catalog, "tweets", proven)
    integrity = found["referential_integrity"]
    assert not integrity.passed
    assert integrity.metadata["foreign_keys"]["user_id -> users(id)"] == {
        "orphans": 1,
        "first_keys": ["orphan-1"],
    }
    assert "missing constraint tweets_user_id_fkey" in found["schema_conforms"].description
    assert found["rows_conserved"].passed and found["rows_conserved"].metadata["app_added"] == 1
    assert found["content_parity"].passed

    silently(
        conn, "INSERT INTO tweets (id, user_id, text, created_at) VALUES ('orphan-2', 'nobody', 'x', now())"
    )
    found = outcomes(conn, catalog, "tweets", proven)
    assert found["referential_integrity"].metadata["foreign_keys"]["user_id -> users(id)"]["orphans"] == 2
    assert not found["rows_conserved"].passed and not found["content_parity"].passed
    assert found["content_parity"].metadata["first_differences"] == [
        {"key": "orphan-2", "difference": "in target, not in source", "columns": []}
    ]


def test_reset_sequence(conn, catalog, proven):
    conn.execute("SELECT setval(pg_get_serial_sequence('referral_usage_log', 'id'), 1)")
    conforms = outcomes(conn, catalog, "referral_usage_log", proven)["schema_conforms"]
    assert not conforms.passed
    assert "would hand out 2, but id already reaches" in conforms.description


def test_changed_column_type_and_default(conn, catalog, proven):
    conn.execute("ALTER TABLE users ALTER COLUMN profile_picture_url TYPE varchar(500)")
    conn.execute("ALTER TABLE funnel_progress ALTER COLUMN current_command_index SET DEFAULT 1")
    assert (
        "column profile_picture_url is"
        in outcomes(conn, catalog, "users", proven)["schema_conforms"].description
    )
    assert "DEFAULT 1" in outcomes(conn, catalog, "funnel_progress", proven)["schema_conforms"].description


def test_no_load_recorded_fails_with_an_explanation(conn, catalog, tmp_path):
    from migration_pipeline.connect.target import apply_schema

    apply_schema(conn, catalog)
    found = outcomes(conn, catalog, "users", None)
    assert not found["rows_conserved"].passed and "no load of users" in found["rows_conserved"].description
    assert not found["content_parity"].passed and not found["jsonb_fidelity"].passed


def test_json_sample_is_an_independent_type_strict_parse(conn, catalog, proven):
    from migration_pipeline.prove.json_sample import same_json

    assert same_json({"a": [1, 2.0, "x", None]}, {"a": [1.0, 2, "x", None]})
    assert not same_json({"a": True}, {"a": 1}) and not same_json([1, 2], [2, 1]) and not same_json("1", 1)
    assert not same_json({"a": 1}, {"a": 1, "b": 2})
    victim = conn.execute("SELECT min(id) FROM tweets WHERE metadata ? 'likes'").fetchone()[0]
    silently(conn, 'UPDATE tweets SET metadata = metadata || \'{"likes": "12"}\' WHERE id = %s', (victim,))
    fidelity = outcomes(conn, catalog, "tweets", proven)["jsonb_fidelity"]
    sample = fidelity.metadata["python_parse_sample"]
    assert sample["sampled_rows"] > 100 and sample["differing"] == [{"key": victim, "column": "metadata"}]
    assert f"{victim}.metadata: differs from Python's parse of the source" in fidelity.problems


def test_quarantine_headline_counts_every_row_not_only_the_listed_groups(conn, catalog, sample_db, tmp_path):
    """More reason groups than are listed: the headline still reports the load's true total."""
    source = editable_copy(sample_db, tmp_path / "app.db")
    sqlite_exec(source, "UPDATE tweets SET created_at = 'someday ' || rowid WHERE rowid <= 120")
    migrate(conn, catalog, source, "run-1", tmp_path)
    found = outcomes(conn, catalog, "tweets", tmp_path / "run-1.snapshot.db")["quarantine"]
    recorded = conn.execute(
        "SELECT rejected_rows FROM migration_audit.table_loads WHERE run_id = 'run-1' AND table_name = 'tweets'"
    ).fetchone()[0]
    assert recorded >= 120 and found.metadata["quarantined_rows"] == recorded
    groups = found.metadata["reason_groups"]
    assert groups > 120 and len(found.metadata["by_reason"]) == 50
    assert found.metadata["new_rows"] == recorded  # a first load: every quarantined row is new
    assert found.problems[0].startswith(f"{recorded} rows newly quarantined (of {recorded};")


def test_quarantine_warns_only_of_what_is_new(conn, catalog, sample_db, tmp_path, monkeypatch):
    """Green means green: rows the previous load quarantined too, or an operator acknowledged, keep the
    check quiet; a row quarantined anew makes it warn, naming that row; QUARANTINE_QUIET_SHARE tolerates."""
    from migration_pipeline.prove import quarantined

    source = editable_copy(sample_db, tmp_path / "app.db")
    migrate(conn, catalog, source, "run-1", tmp_path)
    first = outcomes(conn, catalog, "tweets", tmp_path / "run-1.snapshot.db")["quarantine"]
    assert not first.passed and first.metadata["new_rows"] == first.metadata["quarantined_rows"] > 0

    migrate(conn, catalog, source, "run-2", tmp_path)  # the same rows again: nothing new
    again = outcomes(conn, catalog, "tweets", tmp_path / "run-2.snapshot.db")["quarantine"]
    assert again.passed and again.metadata["new_rows"] == 0 and not again.problems
    assert again.metadata["quarantined_rows"] == first.metadata["quarantined_rows"]

    with sqlite3.connect(source) as db:
        victim = db.execute(
            "SELECT id FROM tweets WHERE rowid = (SELECT max(rowid) FROM tweets WHERE created_at LIKE '2%')"
        ).fetchone()[0]
        db.execute("UPDATE tweets SET created_at = 'not a date' WHERE id = ?", (victim,))
    db.close()
    migrate(conn, catalog, source, "run-3", tmp_path)
    new = outcomes(conn, catalog, "tweets", tmp_path / "run-3.snapshot.db")["quarantine"]
    assert not new.passed and new.metadata["new_rows"] == 1
    assert new.metadata["new_examples"][0]["source_key"] == victim and victim in new.problems[0]

    monkeypatch.setenv("QUARANTINE_QUIET_SHARE", "0.01")  # one row in over a hundred: tolerated
    assert outcomes(conn, catalog, "tweets", tmp_path / "run-3.snapshot.db")["quarantine"].passed
    monkeypatch.delenv("QUARANTINE_QUIET_SHARE")

    assert quarantined.acknowledge(conn, ["tweets"], "operator")["tweets"] == new.metadata["quarantined_rows"]
    seen = outcomes(conn, catalog, "tweets", tmp_path / "run-3.snapshot.db")["quarantine"]
    assert seen.passed and seen.metadata["new_rows"] == 0
    assert conn.execute(
        "SELECT seen_by FROM migration_audit.quarantine_seen WHERE table_name = 'tweets' AND source_key = %s",
        (victim,),
    ).fetchone() == ("operator",)
