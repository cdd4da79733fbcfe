"""The refusals: violating writes the target must refuse, tried in rolled-back transactions.

In:  a :class:`~migration_pipeline.prove.outcome.Subject` (only its connection is used).
Out: an :class:`~migration_pipeline.prove.outcome.Outcome` per probe (checks.py registers them): passed when
     every attempted write failed with the expected error (UNIQUE, FOREIGN KEY, CHECK), with the errors
     seen as metadata.
Fails: psycopg errors other than the expected ones are reported as problems; nothing is left written.
"""

from __future__ import annotations

import psycopg

from .outcome import Outcome, Subject


def _refused(name: str, conn, attempts: list[tuple[str, tuple, type[psycopg.Error]]]) -> Outcome:
    """Each attempted write must fail with the expected error; all of it is rolled back."""
    problems, seen = [], {}
    with conn.transaction(force_rollback=True):
        for statement, params, error in attempts:
            try:
                with conn.transaction():
                    conn.execute(statement, params)
            except error as err:
                seen[statement] = type(err).__name__
            except psycopg.Error as err:
                problems.append(f"{statement!r} failed with {type(err).__name__}, expected {error.__name__}")
            else:
                problems.append(f"{statement!r} was accepted; expected {error.__name__}")
    return Outcome(name, not problems, {"refused": seen}, tuple(problems))


def refuses_duplicate_username(s: Subject) -> Outcome:
    conn = s.conn
    existing = conn.execute("SELECT username FROM users ORDER BY id LIMIT 1").fetchone()
    statement = "INSERT INTO users (id, username) VALUES ('__probe_user__', %s)"
    if existing is None:
        return _refused("refuses_duplicate_username", conn, [
            ("INSERT INTO users (id, username) VALUES ('__probe_a__', '__probe__'), ('__probe_b__', '__probe__')", (),
             psycopg.errors.UniqueViolation)])  # fmt: skip
    return _refused(
        "refuses_duplicate_username", conn, [(statement, existing, psycopg.errors.UniqueViolation)]
    )


def refuses_orphan_tweet(s: Subject) -> Outcome:
    statement = "INSERT INTO tweets (id, user_id, text, created_at) VALUES ('__probe__', '__no_such_user__', 'x', now())"
    return _refused("refuses_orphan_tweet", s.conn, [(statement, (), psycopg.errors.ForeignKeyViolation)])


def refuses_bad_job_status(s: Subject) -> Outcome:
    conn = s.conn
    attempt = (
        "INSERT INTO analysis_queue (user_id, status, total_chunks) VALUES ('__probe_user__', 'bogus', 1)"
    )
    with conn.transaction(force_rollback=True):  # a parent for the job, so only the CHECK can refuse it
        conn.execute(
            "INSERT INTO users (id, username) VALUES ('__probe_user__', '__probe_user__') ON CONFLICT DO NOTHING"
        )
        return _refused("refuses_bad_job_status", conn, [(attempt, (), psycopg.errors.CheckViolation)])
