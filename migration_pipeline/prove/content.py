"""Content parity: the stored rows' checksum against the loaded rows' (checksums.py), and where they differ.

In:  the target, a source snapshot and a table spec.
Out: :func:`content_parity`, the check: the checksum the load recorded, moved by the app's logged writes,
     against the checksum of the rows stored now; on a mismatch :func:`content_diff` names the first keys
     and columns where the target differs from the snapshot (staged again with the load's own
     conversion, stage.py). :func:`after_finalize`: what a content check reports once the source no
     longer describes the table.
Fails: psycopg errors propagate.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from ..catalog import Catalog, TableSpec
from ..move import audit, changes, checksums, keys, phase
from ..move.source import Snapshot
from ..move.stage import Spool, create_stage, plan_columns, stage_rows
from .outcome import Outcome, Subject


def _staged_source(conn, snapshot: Snapshot, catalog: Catalog, spec: TableSpec, run_id: str | None):
    """Stage the snapshot's converted rows (as a load would, with its very conversion) minus the rows that
    load quarantined."""
    columns, _ = plan_columns(snapshot, spec)
    stage = create_stage(conn, spec, columns)
    with Spool(columns) as spool:
        read = lambda: snapshot.stream_columns(spec.name, columns)  # noqa: E731 (read again on a redo)
        stage_rows(conn, read, spec, columns, stage, spool, None)
    if run_id and len(spec.primary_key) == 1 and spec.primary_key[0] in columns:
        conn.execute(
            sql.SQL("DELETE FROM {s} s WHERE {key} IN ({quarantined})").format(
                s=stage,
                key=keys.key_sql(spec.primary_key, "s"),
                quarantined=audit.quarantined_keys_sql(spec.name, run_id),
            )
        )
    return stage, columns


def content_diff(
    conn: psycopg.Connection,
    snapshot: Snapshot,
    catalog: Catalog,
    spec: TableSpec,
    run_id: str | None,
    limit: int = 10,
) -> list[dict]:
    """The first ``limit`` rows where the target differs from the snapshot's loaded rows: key, what
    (missing from target / not in source / changed) and the differing columns. Reads only; rolls back."""
    with conn.transaction(force_rollback=True):
        stage, columns = _staged_source(conn, snapshot, catalog, spec, run_id)
        pk = [sql.Identifier(c) for c in spec.primary_key]
        on = sql.SQL(" AND ").join(sql.SQL("s.{c} = t.{c}").format(c=c) for c in pk)
        differing = sql.SQL("array_remove(ARRAY[{}], NULL)").format(
            sql.SQL(", ").join(
                sql.SQL("CASE WHEN s.{c} IS DISTINCT FROM t.{c} THEN {n} END").format(
                    c=sql.Identifier(c), n=sql.Literal(c)
                )
                for c in columns
            )
        )
        key_text = keys.key_sql(
            spec.primary_key, value=lambda c: sql.SQL("coalesce(s.{c}, t.{c})").format(c=c)
        )
        first_s = sql.SQL("s.{}").format(pk[0])
        first_t = sql.SQL("t.{}").format(pk[0])
        rows = conn.execute(
            sql.SQL(
                "SELECT {key}, CASE WHEN {fs} IS NULL THEN 'in target, not in source' WHEN {ft} IS NULL"
                " THEN 'missing from target' ELSE 'changed' END,"
                " CASE WHEN {fs} IS NULL OR {ft} IS NULL THEN '{{}}'::text[] ELSE {differing} END"
                " FROM (SELECT DISTINCT ON ({pks}) * FROM {stage} ORDER BY {pks}, _rowid) s"
                " FULL JOIN {table} t ON {on}"
                " WHERE ({fs} IS NULL OR {ft} IS NULL OR ({scols}) IS DISTINCT FROM ({tcols}))"
                " AND {key} NOT IN ({changed})"
                " ORDER BY 1 LIMIT %s"
            ).format(
                key=key_text,
                fs=first_s,
                ft=first_t,
                differing=differing,
                pks=sql.SQL(", ").join(pk),
                stage=stage,
                table=sql.Identifier(spec.name),
                on=on,
                scols=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in columns),
                tcols=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in columns),
                changed=changes.changed_keys_sql(spec.name),
            ),
            (limit,),
        ).fetchall()
    return [{"key": key, "difference": what, "columns": cols} for key, what, cols in rows]


def after_finalize(conn, name: str, table: str, *, or_rebased: bool = False) -> Outcome | None:
    """After finalize the content is the app's: a content check says what it last proved, and passes.
    With ``or_rebased``, the same once the table is proven against a baseline recorded from PostgreSQL
    (after resuming the change log), which the source no longer describes."""
    now = phase.current(conn)
    base = audit.proof_baseline(conn, table) or {}
    rebased = or_rebased and base and not base["why"].startswith("load")
    if now.name != phase.FINALIZED and not rebased:
        return None
    return Outcome(
        name,
        True,
        {
            **now.as_metadata(),
            "compared_with_source": False,
            "baseline": {k: str(v) for k, v in base.items()},
        },
        (),
    )


def content_parity(s: Subject) -> Outcome:
    conn, table = s.conn, s.table
    if (done := after_finalize(conn, "content_parity", table)) is not None:
        return done
    base = audit.proof_baseline(conn, table)
    if not base or not base.get("checksum"):
        return Outcome("content_parity", False, {}, (f"no checksum recorded for a load of {table}",))
    loaded = checksums.Checksum.parse(base["checksum"])
    app = changes.summary(conn, table)  # what the app changed since, from the change log
    now = phase.current(conn)
    unexplained = changes.explain(table, changes.unexplained(conn, table), now)
    expected = checksums.Checksum(
        loaded.rows + app.added - app.removed,
        loaded.total + app.added_hash - app.removed_hash,
        loaded.columns,
        loaded.version,  # as the triggers installed with the baseline hash the app's writes
    )
    actual = checksums.table_checksum(conn, s.catalog.table(table), expected.columns, loaded.version)
    metadata = {
        "run_id": base["run_id"],
        "baseline": base["why"],
        "phase": now.name,
        "source_rows_checksum": str(loaded),
        "app_changes": {"added": app.added, "removed": app.removed},
        "expected_checksum": str(expected),
        "target_checksum": str(actual),
        "source_rows": expected.rows,
        "target_rows": actual.rows,
    }
    if (actual.rows, actual.total) == (expected.rows, expected.total) and not unexplained:
        return Outcome("content_parity", True, metadata)
    problems = list(unexplained)
    if (actual.rows, actual.total) != (expected.rows, expected.total):
        problems.append(
            f"target checksum {actual.rows}/{actual.total} != {'loaded source rows' if base['why'].startswith('load') else 'baseline'}"
            f"{' + app changes' if app.added or app.removed else ''} {expected.rows}/{expected.total}"
        )
    snapshot_path = s.snapshot_path
    if snapshot_path is not None and snapshot_path.is_file() and base["why"].startswith("load"):
        load = audit.latest_load(conn, table)
        with Snapshot(snapshot_path) as snap:
            diff = content_diff(conn, snap, s.catalog, s.catalog.table(table), load["run_id"])
        metadata["first_differences"] = diff
        problems += [
            f"{d['key']}: {d['difference']} {', '.join(d['columns'] or [])}".strip() for d in diff[:3]
        ]
    return Outcome("content_parity", False, metadata, tuple(problems))
