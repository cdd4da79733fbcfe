"""Finishing a table: the last step of its full load (load.py) or delta sync (switch/), in that transaction.

In:  the table's :class:`LoadResult`, its source and loaded rows counted, and the spool of the rows it
     quarantined (stage.py, quarantine.py).
Out: :func:`finish_table` writes the quarantined rows into ``rejected_rows`` (with the verdicts a sync
     carries forward from the previous run), checks conservation (source rows = loaded + quarantined),
     sets each ``SERIAL`` sequence past the highest id (:func:`set_sequences`), refreshes the planner's
     statistics and records the ``table_loads`` row with the code version.
Fails: the caller's refusal (its ``refuse``) when conservation does not hold, before sequences or
     statistics change and before anything is recorded; psycopg errors propagate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from ..catalog import TableSpec
from . import audit
from .code_version import code_version
from .stage import Spool


@dataclass
class LoadResult:
    table: str
    run_id: str
    source_present: bool
    source_rows: int = 0
    loaded_rows: int = 0
    rejected_rows: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    defaulted_columns: tuple[str, ...] = ()  # target columns absent from the source: filled by defaults
    cascaded_deletes: dict[str, int] = field(default_factory=dict)
    checksum: str | None = (
        None  # checksums.Checksum of the loaded rows, computed before they entered the table
    )
    started_at: datetime | None = None
    finished_at: datetime | None = None
    origin: dict = field(default_factory=dict)  # the snapshot's provenance (Snapshot.origin())
    removed_rows: int | None = None  # rows of the table before a full load that it removed (their key left)
    shrink_confirmed: dict | None = None  # a shrink beyond the guard's limit the operator confirmed

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def rows_per_second(self) -> float:
        return self.source_rows / self.seconds if self.seconds > 0 else 0.0


def finish_table(
    conn: psycopg.Connection,
    spec: TableSpec,
    result: LoadResult,
    spool: Spool,
    origin: dict,
    refuse: Callable[[LoadResult], Exception],
    *,
    mode: str = "full",
    carry: Callable[[], dict[str, int]] | None = None,
    analyze: bool = True,
) -> None:
    """Finish ``result``'s table (see module doc). ``refuse(result)``: the error to raise when source rows
    != loaded + quarantined; ``carry()`` copies earlier verdicts into this run, returning their counts by
    kind (after this run's own are written, which replaces the run's rows of the table); ``origin`` as
    ``Snapshot.origin()`` gives it; ``mode``: 'full' or 'delta'; ``analyze``: refresh statistics."""
    result.rejected_rows = audit.write_rejections(conn, result.run_id, spec.name, spool.drain())
    carried = carry() if carry is not None else {}
    result.rejected_rows += sum(carried.values())
    result.rejected_by_reason = dict((Counter(spool.kinds) + Counter(carried)).most_common())
    if result.source_rows != result.loaded_rows + result.rejected_rows:
        raise refuse(result)
    set_sequences(conn, spec, result.run_id)
    if analyze:
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(spec.name)))
    result.finished_at = datetime.now(UTC)
    audit.record_table_load(conn, result, origin, code_version(), mode=mode)


def set_sequences(conn: psycopg.Connection, spec: TableSpec, run_id: str) -> None:
    """Each SERIAL column's sequence hands out ids past the highest in the table and among the rows
    ``run_id`` quarantined: a new row of the app never takes the id of a quarantined one, which a
    rollback or a fixed re-load would bring back. Ids below 1 (a sequence starts at 1) or beyond the
    integer range (no row can hold them) leave the sequence where it would be without them."""
    table = sql.Identifier(spec.name)
    for column in spec.serial_columns:
        col = sql.Identifier(column)
        conn.execute(
            sql.SQL(
                "WITH seq AS (SELECT seqrelid, seqmax FROM pg_sequence"
                "             WHERE seqrelid = pg_get_serial_sequence(%(table)s, %(col)s)::regclass),"
                " ids AS (SELECT max({c})::bigint AS id FROM {t} UNION ALL"
                " SELECT max((raw_row->>%(col)s)::bigint) FROM migration_audit.rejected_rows"
                " WHERE run_id = %(run)s AND table_name = %(table)s AND raw_row->>%(col)s ~ '^[0-9]{{1,18}}$'"
                # a quarantined id the sequence can never reach (beyond its type) cannot be reused
                " AND (raw_row->>%(col)s)::bigint <= (SELECT seqmax FROM seq))"
                " SELECT setval((SELECT seqrelid FROM seq), greatest(max(id), 1), coalesce(max(id) >= 1, false))"
                " FROM ids"
            ).format(c=col, t=table),
            {"table": spec.name, "col": column, "run": run_id},
        )
