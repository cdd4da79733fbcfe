"""Content parity: order-independent checksums of a table's rows, and where two sides differ.

In:  a relation (the load's staging table, holding the converted source rows that were loaded, or the
     target table) and the columns to cover.
Out: :func:`checksum` -> ``rowmd5-v1;rows=N;sum=S;columns=a,b`` (the sum of the first 64 bits of the
     md5 of each row's text, so row order does not matter and a duplicated row does not cancel out);
     :func:`content_diff` names the first keys and columns where the target differs from a snapshot;
     :func:`json_fidelity` compares every stored jsonb value with the source JSON text.
Fails: psycopg errors propagate. Row text is rendered with fixed TimeZone/DateStyle so the same values
     always hash the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson
import psycopg
from psycopg import sql

from .catalog import Catalog, TableSpec
from .convert import Rejected, convert_json
from .source import Snapshot

VERSION = "rowmd5-v1"


@dataclass(frozen=True)
class Checksum:
    rows: int
    total: int
    columns: tuple[str, ...]

    def __str__(self) -> str:
        return f"{VERSION};rows={self.rows};sum={self.total};columns={','.join(self.columns)}"

    @classmethod
    def parse(cls, text: str) -> Checksum:
        parts = dict(p.split("=", 1) for p in text.split(";")[1:])
        if not text.startswith(VERSION + ";"):
            raise ValueError(f"unknown checksum format {text[:40]!r}")
        return cls(int(parts["rows"]), int(parts["sum"]), tuple(c for c in parts["columns"].split(",") if c))


def _fixed_rendering(conn: psycopg.Connection) -> None:
    conn.execute("SET LOCAL TimeZone = 'UTC'")
    conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
    conn.execute("SET LOCAL IntervalStyle = 'postgres'")


def _row_hash(columns: Sequence[str], alias: str = "t") -> sql.Composable:
    cols = sql.SQL(", ").join(
        sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(c)) for c in columns
    )
    return sql.SQL("('x' || left(md5(ROW({})::text), 16))::bit(64)::bigint").format(cols)


def checksum(conn: psycopg.Connection, relation: sql.Composable, columns: Sequence[str]) -> Checksum:
    """The checksum of ``relation`` over ``columns`` (call inside a transaction)."""
    _fixed_rendering(conn)
    if not columns:
        rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(relation)).fetchone()[0]
        return Checksum(rows, 0, ())
    rows, total = conn.execute(
        sql.SQL("SELECT count(*), coalesce(sum({}), 0) FROM {} t").format(_row_hash(columns), relation)
    ).fetchone()
    return Checksum(rows, int(total), tuple(columns))


def table_checksum(conn: psycopg.Connection, table: str, columns: Sequence[str]) -> Checksum:
    with conn.transaction():
        return checksum(conn, sql.Identifier(table), columns)


def _staged_source(conn, snapshot: Snapshot, catalog: Catalog, spec: TableSpec, run_id: str | None):
    """Stage the snapshot's converted rows (as a load would) minus the rows that load quarantined."""
    from .load import plan_columns, stage_rows  # the very conversion the load used
    from .quarantine import Spool, create_stage

    columns, _ = plan_columns(snapshot, spec)
    stage = create_stage(conn, spec, columns)
    with Spool(columns) as spool:
        stage_rows(conn, snapshot, spec, columns, stage, spool, None)
    if run_id and len(spec.primary_key) == 1 and spec.primary_key[0] in columns:
        conn.execute(
            sql.SQL(
                "DELETE FROM {s} s USING migration_audit.rejected_rows r WHERE r.run_id = %s AND r.table_name = %s"
                " AND r.source_key = s.{pk}::text"
            ).format(s=stage, pk=sql.Identifier(spec.primary_key[0])),
            (run_id, spec.name),
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
        key_text = sql.SQL("concat_ws(',', {})").format(
            sql.SQL(", ").join(sql.SQL("coalesce(s.{c}, t.{c})::text").format(c=c) for c in pk)
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
                " WHERE {fs} IS NULL OR {ft} IS NULL OR ({scols}) IS DISTINCT FROM ({tcols})"
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
            ),
            (limit,),
        ).fetchall()
    return [{"key": key, "difference": what, "columns": cols} for key, what, cols in rows]


_TYPEOF = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}


def json_fidelity(
    conn: psycopg.Connection, snapshot: Snapshot, spec: TableSpec, run_id: str | None, limit: int = 10
) -> dict:
    """Every jsonb value of the table against its source JSON text: equal as JSON (same structure,
    numbers, unicode) and the same type as Python's strict parse of the source. Reads only."""
    json_columns = [c.name for c in spec.columns if c.kind == "jsonb"]
    present = set(snapshot.columns(spec.name)) if snapshot.has_table(spec.name) else set()
    json_columns = [c for c in json_columns if c in present]
    outcome = {"columns": json_columns, "compared": 0, "mismatches": []}
    if not json_columns or len(spec.primary_key) != 1:
        return outcome
    pk = spec.primary_key[0]
    with conn.transaction(force_rollback=True):
        conn.execute("CREATE TEMP TABLE _json_source (k text, col text, src text, typ text) ON COMMIT DROP")
        with conn.cursor() as cur, cur.copy("COPY _json_source FROM STDIN") as copy:
            for batch in snapshot.stream(spec.name, [pk, *json_columns]):
                for row in batch:
                    for name, value in zip(json_columns, row[2:], strict=True):
                        try:
                            text = convert_json(value)
                        except Rejected:
                            continue  # quarantined by the load: not in the target
                        if text is None:
                            copy.write_row((str(row[1]), name, None, None))
                            continue
                        parsed = orjson.loads(text) if isinstance(value, str) else value
                        kind = _TYPEOF.get(type(parsed), "number")
                        copy.write_row((str(row[1]), name, text, kind))
        per_value = sql.SQL(" UNION ALL ").join(
            sql.SQL(
                "SELECT s.k, s.col, t.{c} IS NOT DISTINCT FROM s.src::jsonb AS same,"
                " jsonb_typeof(t.{c}) IS NOT DISTINCT FROM s.typ AS same_type"
                " FROM _json_source s JOIN {t} t ON t.{pk}::text = s.k WHERE s.col = {name}"
            ).format(
                c=sql.Identifier(c), t=sql.Identifier(spec.name), pk=sql.Identifier(pk), name=sql.Literal(c)
            )
            for c in json_columns
        )
        # A key the source holds twice (the later copy was quarantined) passes if one copy matches.
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE _json_compared ON COMMIT DROP AS SELECT k, col, bool_or(same) AS same,"
                " bool_or(same_type) AS same_type FROM ({}) x GROUP BY k, col"
            ).format(per_value)
        )
        compared, bad = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE NOT (same AND same_type)) FROM _json_compared"
        ).fetchone()
        mismatches = conn.execute(
            "SELECT k, col, same, same_type FROM _json_compared WHERE NOT (same AND same_type)"
            " ORDER BY 1, 2 LIMIT %s",
            (limit,),
        ).fetchall()
    outcome["compared"] = compared
    outcome["mismatched"] = bad
    outcome["mismatches"] = [
        {"key": k, "column": c, "value_differs": not same, "type_differs": not same_type}
        for k, c, same, same_type in mismatches
    ]
    return outcome
