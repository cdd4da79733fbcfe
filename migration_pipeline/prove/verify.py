"""Counts, integrity and quarantine: a migrated table against its recorded load.

In:  a connection to the target and a table name.
Out: :func:`conservation` returns the latest ``table_loads`` numbers of the table, the rows quarantined
     by that load as found in ``rejected_rows``, the rows in the table now, and whether they agree;
     :func:`orphans` counts rows referencing no parent, per foreign key; :func:`quarantined_by_reason`
     summarises the latest load's quarantine. The checks over them (checks.py registers them):
     :func:`rows_conserved`, :func:`referential_integrity`, :func:`quarantine`.
Fails: psycopg errors propagate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import psycopg
from psycopg import sql

from ..catalog import Catalog
from ..connect.settings import quarantine_quiet_share
from ..move import audit, changes, keys, phase
from . import quarantined
from .outcome import Outcome, Subject


@dataclass(frozen=True)
class Conservation:
    table: str
    run_id: str | None
    source_rows: int
    loaded_rows: int
    rejected_rows: int
    quarantined_in_audit: int
    rows_in_table: int
    app_added: int = 0  # rows the app added / removed since the baseline (the change log, explained)
    app_removed: int = 0
    baseline_rows: int | None = None  # the rows the content is proven against (load, or a later baseline)
    baseline: str | None = None  # which: "load (full)", "finalize", "change log resumed"...
    phase: str = "migrated"
    unexplained: tuple[str, ...] = ()  # changes in the log that are not the app's writes (see changes.py)

    @property
    def recorded(self) -> bool:
        return self.run_id is not None

    @property
    def problems(self) -> list[str]:
        if not self.recorded:
            return [f"no load of {self.table} is recorded in migration_audit.table_loads"]
        found = []
        if self.source_rows != self.loaded_rows + self.rejected_rows:
            found.append(
                f"source rows {self.source_rows} != loaded {self.loaded_rows} + quarantined {self.rejected_rows}"
            )
        if self.quarantined_in_audit != self.rejected_rows:
            found.append(
                f"{self.rejected_rows} rows reported quarantined but {self.quarantined_in_audit} are in rejected_rows"
            )
        base = self.loaded_rows if self.baseline_rows is None else self.baseline_rows
        expected = base + self.app_added - self.app_removed
        if self.phase != "finalized" and self.rows_in_table != expected:
            what = f"{base} rows {'loaded' if self.baseline_rows in (None, self.loaded_rows) else 'at the baseline'}"
            since = (
                f" + {self.app_added} added - {self.app_removed} removed by the app"
                if self.app_added or self.app_removed
                else ""
            )
            found.append(f"{what}{since} but the table holds {self.rows_in_table}")
        return found + list(self.unexplained)

    def as_metadata(self) -> dict:
        return asdict(self)


def conservation(conn: psycopg.Connection, table: str) -> Conservation:
    load = audit.latest_load(conn, table) or {}
    base = audit.proof_baseline(conn, table) or {}
    run_id = load.get("run_id")
    in_audit = conn.execute(
        "SELECT count(*) FROM migration_audit.rejected_rows WHERE run_id = %s AND table_name = %s",
        (run_id, table),
    ).fetchone()[0]
    rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
    app = changes.summary(conn, table)
    now = phase.current(conn)
    return Conservation(
        table=table,
        run_id=run_id,
        source_rows=load.get("source_rows", 0),
        loaded_rows=load.get("loaded_rows", 0),
        rejected_rows=load.get("rejected_rows", 0),
        quarantined_in_audit=in_audit,
        rows_in_table=rows,
        app_added=app.added,
        app_removed=app.removed,
        baseline_rows=base.get("rows"),
        baseline=base.get("why"),
        phase=now.name,
        unexplained=tuple(changes.explain(table, changes.unexplained(conn, table), now)),
    )


def orphans(conn: psycopg.Connection, catalog: Catalog, table: str, limit: int = 5) -> dict[str, dict]:
    """For every foreign key of ``table``: how many rows reference no parent row, counted by query (so a
    dropped or disabled constraint cannot hide them), and the first few of their keys."""
    spec = catalog.table(table)
    found = {}
    for fk in spec.foreign_keys:
        child = sql.SQL(", ").join(sql.SQL("c.{}").format(sql.Identifier(c)) for c in fk.columns)
        parent = sql.SQL(", ").join(sql.SQL("p.{}").format(sql.Identifier(c)) for c in fk.parent_columns)
        not_null = sql.SQL(" AND ").join(
            sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(c)) for c in fk.columns
        )
        key = keys.key_sql(spec.primary_key, "c")
        rows = conn.execute(
            sql.SQL(
                "SELECT {key}, count(*) OVER () FROM {child_t} c WHERE {not_null} AND NOT EXISTS"
                " (SELECT 1 FROM {parent_t} p WHERE ({parent}) = ({child})) ORDER BY 1 LIMIT %s"
            ).format(
                key=key,
                child_t=sql.Identifier(table),
                not_null=not_null,
                parent_t=sql.Identifier(fk.parent),
                parent=parent,
                child=child,
            ),
            (limit,),
        ).fetchall()
        label = f"{','.join(fk.columns)} -> {fk.parent}({','.join(fk.parent_columns)})"
        found[label] = {"orphans": rows[0][1] if rows else 0, "first_keys": [r[0] for r in rows]}
    return found


def quarantined_by_reason(conn: psycopg.Connection, table: str, limit: int = 50) -> dict:
    """Rows quarantined from ``table`` by its latest load: the true total, how many (column, reason)
    groups there are, and the largest ``limit`` of them with their counts."""
    load = audit.latest_load(conn, table) or {}
    rows = conn.execute(
        """
        SELECT coalesce(column_name, '-') || ': ' || reason, count(*), sum(count(*)) OVER (), count(*) OVER ()
        FROM migration_audit.rejected_rows WHERE table_name = %s AND run_id = %s
        GROUP BY 1 ORDER BY 2 DESC, 1
        """,
        (table, load.get("run_id")),
    ).fetchall()
    return {
        "total": int(rows[0][2]) if rows else 0,
        "groups": rows[0][3] if rows else 0,
        "by_reason": {r[0]: r[1] for r in rows[:limit]},
    }


def rows_conserved(s: Subject) -> Outcome:
    found = conservation(s.conn, s.table)
    return Outcome("rows_conserved", not found.problems, found.as_metadata(), tuple(found.problems))


def referential_integrity(s: Subject) -> Outcome:
    found = orphans(s.conn, s.catalog, s.table)
    problems = tuple(
        f"{fk}: {n['orphans']} orphan rows, e.g. {n['first_keys']}" for fk, n in found.items() if n["orphans"]
    )
    return Outcome("referential_integrity", not problems, {"foreign_keys": found}, problems)


def quarantine(s: Subject) -> Outcome:
    """Quiet when nothing was quarantined anew (quarantined.new_rows: not by the previous load, not
    acknowledged), or when the new rows are at most QUARANTINE_QUIET_SHARE of the source; else a warning
    naming the new rows. The totals by reason are always in its numbers."""
    found = quarantined_by_reason(s.conn, s.table)
    total, groups = found["total"], found["groups"]
    new = quarantined.new_rows(s.conn, s.table)
    source_rows = int((audit.latest_load(s.conn, s.table) or {}).get("source_rows") or 0)
    quiet_share = quarantine_quiet_share()
    quiet = not new or len(new) <= quiet_share * source_rows
    problems = ()
    if not quiet:
        shown = "; ".join(f"{r['source_key']} {r['column_name'] or '-'}: {r['reason']}" for r in new[:5])
        problems = (
            f"{len(new)} rows newly quarantined (of {total}; `migration-pipeline quarantine list {s.table}`, "
            f"then `quarantine ack {s.table}` once seen): {shown}" + (" ..." if len(new) > 5 else ""),
        )
    return Outcome(
        "quarantine",
        quiet,
        {
            "quarantined_rows": total,
            "new_rows": len(new),
            "new_examples": [{k: r[k] for k in ("source_key", "column_name", "reason")} for r in new[:20]],
            "quiet_share": quiet_share,
            "quarantined_rows_listed": sum(found["by_reason"].values()),
            "reason_groups": groups,
            "by_reason": found["by_reason"],
        },
        problems,
    )
