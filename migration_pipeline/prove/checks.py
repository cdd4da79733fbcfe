"""Every check, as data: the one spec type, the one registry, and how checks are run.

In:  a connection to the target, the catalog, the tables to check and the source snapshot they were
     loaded from (the checks that compare against the source read it).
Out: :class:`Check` (name, blocking or warning, description, the function returning an Outcome with the
     numbers it compared, the tables it applies to, the step it runs in), :data:`CHECKS` (all of them:
     each table's counts, integrity, content, JSON, conformance and quarantine, then the app's queries
     and the refusals), :func:`steps` (what runs together) and :func:`run`. The check families live in
     their own modules (verify, content, jsonb, conformance, app_queries, probes); ``defs/prove.py``
     makes Dagster asset checks of this registry, report.py and proof.run read it. Knows nothing of Dagster.
Fails: psycopg errors propagate; a check that cannot be evaluated (no load recorded, no snapshot) fails
     with that explanation rather than passing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import psycopg

from ..catalog import Catalog, TableSpec
from ..move.source import Snapshot
from . import app_queries, conformance, content, jsonb, probes, verify
from .outcome import Outcome, Subject

NO_SNAPSHOT = "no source snapshot to compare with"


@dataclass(frozen=True)
class Check:
    name: str
    blocking: bool  # False: a warning
    description: str
    evaluate: Callable[[Subject], Outcome]  # the Outcome carries the numbers it compared
    # Which tables: the one it belongs to (the app's queries, the refusals), or every table (None),
    # optionally only those with a jsonb column.
    table: str | None = None
    only_with_jsonb: bool = False
    # The checks of one table and step run together (one Dagster step); steps run in parallel. The JSON
    # comparison streams the whole source table again, so it gets a step of its own.
    step: str = "table"
    needs_snapshot: bool = False  # evaluated with the source snapshot open; fails without one

    def applies_to(self, spec: TableSpec) -> bool:
        if self.table is not None:
            return spec.name == self.table
        return not self.only_with_jsonb or any(c.kind == "jsonb" for c in spec.columns)


def _app(name: str, table: str, description: str, evaluate: Callable[[Subject], Outcome]) -> Check:
    """One of the app's queries or refusals: blocking, about one table, compared with the open snapshot."""
    return Check(name, True, description, evaluate, table=table, step="app", needs_snapshot=True)


CHECKS: tuple[Check, ...] = (
    Check(
        "rows_conserved",
        True,
        "Every source row is accounted for: source rows = loaded + quarantined (as recorded by the last load "
        "and found in migration_audit.rejected_rows), and the table holds exactly the loaded rows, plus and "
        "minus the app's logged writes once it writes to PostgreSQL (phase switched). Any other change in "
        "PostgreSQL fails it, named (statement, rows, keys, when, role, application, client).",
        verify.rows_conserved,
    ),
    Check(
        "referential_integrity",
        True,
        "No row references a missing parent, counted by query for every foreign key of schema/ (so a dropped "
        "or disabled constraint cannot hide an orphan).",
        verify.referential_integrity,
    ),
    Check(
        "content_parity",
        True,
        "An order-independent checksum of every loaded row, computed over the converted source rows during "
        "the load, equals the same checksum over the stored rows now (adjusted by the app's logged writes "
        "after the switch; any other change fails it, named); on mismatch the first differing keys and "
        "columns are named (compared against the snapshot). After finalize it reports the final baseline.",
        content.content_parity,
    ),
    Check(
        "jsonb_fidelity",
        True,
        "Every jsonb value equals the source JSON text it came from (same structure, numbers, unicode) and has "
        "that text's JSON type; a sample of rows is also parsed on both sides by Python and compared type-strictly.",
        jsonb.jsonb_fidelity,
        only_with_jsonb=True,
        step="json",
    ),
    Check(
        "schema_conforms",
        True,
        "Columns, types, NOT NULL, defaults, constraints and indexes match what schema/ creates (applied to a "
        "scratch schema and compared through PostgreSQL's catalog), and every SERIAL sequence is past its max.",
        conformance.schema_conforms,
    ),
    Check(
        "quarantine",
        False,
        "Warning, not blocking, and only of what is new: rows the last load quarantined that the table's "
        "previous load did not and nobody acknowledged (quarantine ack), beyond QUARANTINE_QUIET_SHARE of its "
        "source rows, named; every quarantined row is counted by column and reason in its numbers.",
        verify.quarantine,
    ),
    _app("app_user_lookup", "users", "The app's user lookup by username answers the same on both sides, through the username index.", app_queries.user_lookup),
    _app("app_tweets_by_date_range", "tweets", "A user's tweets in a date range: same tweets in the same order, through idx_tweets_user_created (or _created).", app_queries.tweets_by_date_range),
    _app("app_reply_filter", "tweets", "A user's non-reply tweets: the same on both sides, through idx_tweets_user_created.", app_queries.reply_filter),
    _app("app_full_text_search", "tweets", "Full-text search for a word returns the tweets containing it, through the GIN index idx_tweets_text.", app_queries.full_text_search),
    _app("app_referral_stats", "referral_tracking", "Referral counts per referrer are the same on both sides, through idx_referral_tracking_referrer.", app_queries.referral_stats),
    _app("app_funnel_progress", "funnel_progress", "A user's funnel progress reads the same on both sides, through the primary key.", app_queries.funnel_progress),
    _app("app_pending_jobs", "analysis_queue", "Pending analysis jobs by priority: same jobs in the same order, through idx_analysis_queue_priority or _status.", app_queries.pending_jobs),
    _app("refuses_duplicate_username", "users", "A second user with an existing username is refused (UNIQUE), in a rolled-back transaction.", probes.refuses_duplicate_username),
    _app("refuses_orphan_tweet", "tweets", "A tweet of a user that does not exist is refused (FOREIGN KEY), in a rolled-back transaction.", probes.refuses_orphan_tweet),
    _app("refuses_bad_job_status", "analysis_queue", "An analysis job with an unknown status is refused (CHECK valid_status), in a rolled-back transaction.", probes.refuses_bad_job_status),
)  # fmt: skip

BY_NAME: dict[str, Check] = {c.name: c for c in CHECKS}


def steps(catalog: Catalog) -> list[tuple[str, str, tuple[Check, ...]]]:
    """(table, step, its checks) for every step to run: each table's own steps in load order, then the
    steps of the checks that belong to one table."""
    found: dict[tuple[str, str], tuple[Check, ...]] = {}
    every, one = [c for c in CHECKS if c.table is None], [c for c in CHECKS if c.table is not None]
    placed = [(spec.name, c) for spec in catalog.tables for c in every if c.applies_to(spec)]
    for table, check in placed + [(c.table, c) for c in one]:
        found[table, check.step] = (*found.get((table, check.step), ()), check)
    return [(table, step, checks) for (table, step), checks in found.items()]


def run(
    conn: psycopg.Connection,
    catalog: Catalog,
    snapshot_path: Path | None,
    selected: Sequence[tuple[str, Check]],
) -> list[Outcome]:
    """Evaluate each (table, check) of ``selected``, in order. The snapshot is opened once for the checks
    that need it open; without one they fail, saying so."""
    present = snapshot_path is not None and Path(snapshot_path).is_file()
    opened = present and any(c.needs_snapshot for _, c in selected)
    with Snapshot(snapshot_path) if opened else nullcontext() as snapshot:
        return [
            c.evaluate(Subject(conn, catalog, table, snapshot_path, snapshot))
            if present or not c.needs_snapshot
            else Outcome(c.name, False, {}, (NO_SNAPSHOT,))
            for table, c in selected
        ]
