"""Behaviour parity: the app's queries, their indexes, and refused violating writes."""

from __future__ import annotations

import pytest

from migration_pipeline.prove import app_queries, behaviour

from .helpers import migrate, silently


@pytest.fixture
def proven(conn, catalog, sample_db, tmp_path):
    migrate(conn, catalog, sample_db, "run-1", tmp_path)
    return tmp_path / "run-1.snapshot.db"


def outcomes(conn, catalog, snapshot):
    return {o.name: o for _, o in behaviour.run(conn, catalog, snapshot)}


def test_the_app_queries_answer_the_same_through_their_indexes(conn, catalog, proven):
    found = outcomes(conn, catalog, proven)
    assert set(found) == {c.name for c in behaviour.CHECKS}
    for name, outcome in found.items():
        assert outcome.passed, (name, outcome.problems)
    assert found["app_full_text_search"].metadata["indexes_used"] == ["idx_tweets_text"]
    assert found["app_tweets_by_date_range"].metadata["answer_size"] > 0
    assert found["app_pending_jobs"].metadata["answer_size"] > 0
    assert found["refuses_orphan_tweet"].metadata["refused"]
    # nothing the probes attempted was left behind
    assert conn.execute("SELECT count(*) FROM users WHERE id LIKE '__probe%'").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM tweets WHERE id = '__probe__'").fetchone()[0] == 0


def test_a_dropped_gin_index_is_noticed(conn, catalog, proven):
    conn.execute("DROP INDEX idx_tweets_text")
    fts = outcomes(conn, catalog, proven)["app_full_text_search"]
    assert not fts.passed and "does not use idx_tweets_text" in fts.description


def test_a_changed_answer_is_noticed(conn, catalog, proven):
    user = conn.execute("SELECT user_id FROM tweets ORDER BY id LIMIT 1").fetchone()[0]
    silently(
        conn,
        "UPDATE tweets SET is_reply = NOT coalesce(is_reply, false) WHERE id = (SELECT min(id) FROM tweets WHERE user_id = %s)",
        (user,),
    )
    replies = outcomes(conn, catalog, proven)["app_reply_filter"]
    assert not replies.passed and "PostgreSQL answered" in replies.description


def test_a_dropped_constraint_lets_a_violation_through_and_is_noticed(conn, catalog, proven):
    conn.execute("ALTER TABLE analysis_queue DROP CONSTRAINT valid_status")
    conn.execute("ALTER TABLE users DROP CONSTRAINT users_username_key")
    found = outcomes(conn, catalog, proven)
    assert not found["refuses_bad_job_status"].passed
    assert "was accepted; expected CheckViolation" in found["refuses_bad_job_status"].description
    assert not found["refuses_duplicate_username"].passed
    assert not found["app_user_lookup"].passed  # its index went with the constraint


def test_full_text_parity_holds_for_words_that_stem_alike(conn, catalog, tmp_path):
    from migration_pipeline.samples.sample_data import generate

    from .helpers import sqlite_exec

    source = generate(tmp_path / "words.db", users=5, tweets=0, bad_fraction=0)
    texts = {"a0": "music night", "a1": "a musical evening", "a2": "musician life", "a3": "MUSIC!"}
    sqlite_exec(
        source,
        *(
            f"INSERT INTO tweets (id, user_id, text, created_at) VALUES ('{k}', 'u0', '{v}', 0)"
            for k, v in texts.items()
        ),
    )
    migrate(conn, catalog, source, "run-w", tmp_path)
    fts = outcomes(conn, catalog, tmp_path / "run-w.snapshot.db")["app_full_text_search"]
    assert fts.passed, fts.problems
    assert fts.metadata["word"] == "music" and fts.metadata["answer_size"] == 3  # a0, a1 (musical), a3


def test_full_text_parity_on_a_slice_of_a_larger_table(conn, catalog, proven, monkeypatch):
    monkeypatch.setattr(app_queries, "FTS_SLICE", 500)
    fts = outcomes(conn, catalog, proven)["app_full_text_search"]
    assert fts.passed, fts.problems
    assert fts.metadata["compared_up_to_key"] is not None and 0 < fts.metadata["answer_size"] < 500
