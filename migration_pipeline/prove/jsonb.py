"""JSON fidelity: every jsonb value against the source JSON text it came from.

In:  the target, a source snapshot and a table spec.
Out: :func:`json_fidelity` compares every stored jsonb value with its source text in PostgreSQL (equal
     as JSON, same JSON type); :func:`jsonb_fidelity`, the check, adds Python's type-strict parse of a
     sample of rows on both sides (json_sample.py).
Fails: psycopg errors propagate. Reads only (its scratch table lives in a rolled-back transaction).
"""

from __future__ import annotations

import math
import os

import psycopg
from psycopg import sql

from ..catalog import TableSpec
from ..move import audit, changes, keys
from ..move.convert import Rejected, converter_for
from ..move.source import Snapshot
from . import json_sample
from .content import after_finalize
from .outcome import Outcome, Subject

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


def jsonb_fidelity(s: Subject) -> Outcome:
    conn, table, snapshot_path = s.conn, s.table, s.snapshot_path
    if (done := after_finalize(conn, "jsonb_fidelity", table, or_rebased=True)) is not None:
        return done
    spec = s.catalog.table(table)
    if snapshot_path is None or not snapshot_path.is_file():
        return Outcome("jsonb_fidelity", False, {}, ("no source snapshot to compare JSON values with",))
    load = audit.latest_load(conn, table) or {}
    with Snapshot(snapshot_path) as snap:
        found = json_fidelity(conn, snap, spec, load.get("run_id"))
        if found["columns"] and len(spec.primary_key) == 1:
            found["python_parse_sample"] = json_sample.compare_sample(
                conn, snap, spec, found["columns"], run_id=load.get("run_id")
            )
    problems = [
        f"{m['key']}.{m['column']}: " + ("value differs" if m["value_differs"] else "jsonb_typeof differs")
        for m in found["mismatches"]
    ]
    sample = found.get("python_parse_sample", {})
    problems += [
        f"{d['key']}.{d['column']}: differs from Python's parse of the source"
        for d in sample.get("differing", [])
    ]
    return Outcome("jsonb_fidelity", not problems, found, tuple(problems))
