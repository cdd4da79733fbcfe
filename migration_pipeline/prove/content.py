"""Content parity beyond the checksum: where two sides differ, and every JSON value against its source.

In:  the target, a source snapshot and a table spec (the checksum itself is checksums.py's).
Out: :func:`content_diff` names the first keys and columns where the target differs from a snapshot
     (staged again with the load's own conversion, stage.py); :func:`json_fidelity` compares every stored
     jsonb value with the source JSON text.
Fails: psycopg errors propagate.
"""

from __future__ import annotations

import math
import os

import psycopg
from psycopg import sql

from ..catalog import Catalog, TableSpec
from ..move import audit, changes, keys
from ..move.convert import Rejected, converter_for
from ..move.source import Snapshot
from ..move.stage import Spool, create_stage, plan_columns, stage_rows


def _staged_source(conn, snapshot: Snapshot, catalog: Catalog, spec: TableSpec, run_id: str | None):
    """Stage the snapshot's converted rows (as a load would, with its very conversion) minus the rows that
    load quarantined."""
    columns, _ = plan_columns(snapshot, spec)
    stage = create_stage(conn, spec, columns)
    with Spool(columns) as spool:
        stage_rows(conn, lambda: snapshot.stream(spec.name, columns), spec, columns, stage, spool, None)
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


_UNLOADABLE = object()


def _json_text(value: object) -> object:
    """A source JSON value as the text the load stored (see convert.convert_json), or _UNLOADABLE
    for values whose row the load must have quarantined (BLOBs, invalid UTF-8, NUL, non-finite numbers)."""
    if value is None or (type(value) is str and "\x00" not in value):
        return value
    if type(value) is int:
        return str(value)
    if type(value) is float and math.isfinite(value):
        return repr(value)
    return _UNLOADABLE


def _sql_json_type(text: sql.Composable) -> sql.Composable:
    """The JSON type of valid JSON text, from its first non-blank character (RFC 8259's grammar)."""
    return sql.SQL(
        "CASE WHEN {t} IS NULL THEN NULL ELSE CASE left(ltrim({t}, E' \\t\\n\\r'), 1) WHEN '{{' THEN 'object'"
        " WHEN '[' THEN 'array' WHEN '\"' THEN 'string' WHEN 't' THEN 'boolean' WHEN 'f' THEN 'boolean'"
        " WHEN 'n' THEN 'null' ELSE 'number' END END"
    ).format(t=text)


def json_fidelity(
    conn: psycopg.Connection, snapshot: Snapshot, spec: TableSpec, run_id: str | None, limit: int = 10
) -> dict:
    """Every jsonb value of the table against its source JSON text: equal as JSON (same structure,
    numbers, unicode) and of the JSON type of that text (validated by the load's strict parse: rows
    that failed it are not in the table, so they are not compared). Reads only."""
    json_columns = [c.name for c in spec.columns if c.kind == "jsonb"]
    present = set(snapshot.columns(spec.name)) if snapshot.has_table(spec.name) else set()
    json_columns = [c for c in json_columns if c in present]
    outcome = {"columns": json_columns, "compared": 0, "mismatches": []}
    if not json_columns or len(spec.primary_key) != 1:
        return outcome
    pk = spec.primary_key[0]
    n = range(len(json_columns))
    with conn.transaction(force_rollback=True):
        source_columns = ", ".join(f"s{i} text" for i in n)
        # An unlogged table, not a temporary one: PostgreSQL can scan and join it with parallel workers.
        # Created inside this rolled-back transaction, it never outlives the check.
        source = sql.Identifier("migration_audit", f"_json_source_{os.getpid()}")
        conn.execute(sql.SQL("CREATE UNLOGGED TABLE {} (k text, {})").format(source, sql.SQL(source_columns)))
        # the rows the load quarantined are left out by rowid: a key can be shared with a loaded row
        quarantined = audit.rejected_rowids(conn, spec.name, run_id)
        key_of = converter_for(spec.column(pk).kind, spec.column(pk).max_length)
        with conn.cursor() as cur, cur.copy(sql.SQL("COPY {} FROM STDIN").format(source)) as copy:
            for batch in snapshot.stream(spec.name, [pk, *json_columns]):
                for row in batch:
                    texts = [_json_text(v) for v in row[2:]]
                    if row[0] in quarantined or _UNLOADABLE in texts:
                        continue  # not in the target
                    try:
                        key = key_of(row[1])  # the key as the target holds it
                    except Rejected:
                        continue
                    copy.write_row([keys.key_text([key]), *texts])
        conn.execute(sql.SQL("ANALYZE {}").format(source))  # row count for the planner: a parallel join
        value_ok = [
            sql.SQL("t.{c} IS NOT DISTINCT FROM s.s{i}::jsonb").format(c=sql.Identifier(c), i=sql.SQL(str(i)))
            for i, c in enumerate(json_columns)
        ]
        type_ok = [
            sql.SQL("jsonb_typeof(t.{c}) IS NOT DISTINCT FROM {typ}").format(
                c=sql.Identifier(c), typ=_sql_json_type(sql.SQL("s.s{}").format(sql.SQL(str(i))))
            )
            for i, c in enumerate(json_columns)
        ]
        flags = sql.SQL(", ").join(
            sql.SQL("{} AS v{i}, {} AS t{i}").format(v, y, i=sql.SQL(str(i)))
            for i, (v, y) in enumerate(zip(value_ok, type_ok, strict=True))
        )
        all_ok = sql.SQL(" AND ").join(sql.SQL("v{i} AND t{i}").format(i=sql.SQL(str(i))) for i in n)
        # rows the app changed since the load are not compared with the source (see changes.py)
        joined = sql.SQL("{source} s JOIN {t} t ON {key} = s.k WHERE s.k NOT IN ({changed})").format(
            source=source,
            t=sql.Identifier(spec.name),
            key=keys.key_sql([pk], "t"),
            changed=changes.changed_keys_sql(spec.name),
        )
        every_ok = sql.SQL(" AND ").join([*value_ok, *type_ok])
        # One parallel pass for the verdict; the details only when something differs.
        rows, bad = conn.execute(
            sql.SQL("SELECT count(*), count(*) FILTER (WHERE NOT ({})) FROM {}").format(every_ok, joined)
        ).fetchone()
        first = None
        if bad:
            # A key the source holds twice (the later copy was quarantined) passes if one copy matches.
            bad, first = conn.execute(
                sql.SQL(
                    "WITH cmp AS MATERIALIZED (SELECT s.k, {flags} FROM {joined}),"
                    " bad AS (SELECT * FROM cmp c WHERE NOT ({all_ok}) AND NOT EXISTS"
                    "  (SELECT 1 FROM cmp o WHERE o.k = c.k AND ({all_ok_o})))"
                    " SELECT (SELECT count(*) FROM bad),"
                    " (SELECT json_agg(to_jsonb(b)) FROM (SELECT * FROM bad ORDER BY k LIMIT %s) b)"
                ).format(
                    flags=flags,
                    joined=joined,
                    all_ok=all_ok,
                    all_ok_o=sql.SQL(" AND ").join(
                        sql.SQL("o.v{i} AND o.t{i}").format(i=sql.SQL(str(i))) for i in n
                    ),
                ),
                (limit,),
            ).fetchone()
    outcome["compared"] = rows * len(json_columns)
    outcome["mismatched"] = bad
    outcome["mismatches"] = [
        {"key": m["k"], "column": c, "value_differs": not m[f"v{i}"], "type_differs": not m[f"t{i}"]}
        for m in first or []
        for i, c in enumerate(json_columns)
        if not (m[f"v{i}"] and m[f"t{i}"])
    ]
    return outcome
