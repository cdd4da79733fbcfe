"""How one of the app's queries is compared: the source side under the value rules, PostgreSQL's side, its plan.

In:  a connection to the target, the catalog and the open snapshot the tables were loaded from.
Out: :func:`source_rows` (the snapshot's rows matching a SQLite filter, converted under the value rules,
     minus the rows the load quarantined and the rows the app changed since: :func:`skipped`),
     :func:`pg_rows` (PostgreSQL's answer, less the same keys), :func:`uses_index` (whether the plan uses
     the intended index, with sequential and plain index scans discouraged so that the index matching
     the query's predicate shows at any table size) and :func:`compare`, the Outcome of one query.
Fails: psycopg errors propagate; nothing is written (plans are read in rolled-back transactions).
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
from psycopg import sql
from psycopg.types.json import set_json_loads

from ..catalog import TableSpec
from ..move import audit, changes, keys, phase
from ..move.convert import Rejected, converter_for
from ..move.json_rules import parse_exact
from ..move.source import Snapshot, quote
from .outcome import Outcome


def comparable_row(spec: TableSpec, columns, values) -> dict | None:
    """A source row under the value rules as {column: value}, JSON parsed exactly (numbers as Decimal,
    json_rules.parse_exact) so it compares with what :func:`pg_rows` returns for jsonb (1e23 and the
    digits jsonb writes for it are one number); None when a value would be rejected."""
    out = {}
    for name, value in zip(columns, values, strict=True):
        col = spec.column(name)
        try:
            v = converter_for(col.kind, col.max_length)(value)
        except Rejected:
            return None
        out[name] = parse_exact(v) if col.kind == "jsonb" and v is not None else v
    return out


def skipped(conn, table: str) -> set[str]:
    """Keys to leave out on both sides: rows the load quarantined (absent by design) and rows the app
    changed since the load (the change log's explained entries: a live database answers differently,
    and rightly so; a change that is not the app's is compared, and so found)."""
    rows = conn.execute(
        sql.SQL("{} UNION {}").format(audit.quarantined_keys_sql(table), changes.changed_keys_sql(table))
    ).fetchall()
    return {r[0] for r in rows}


def source_rows(
    conn, snapshot: Snapshot, spec: TableSpec, where: str = "", params: tuple = (), only: tuple[str, ...] = ()
) -> Iterator[dict]:
    """The loaded source rows of ``spec`` matching a SQLite filter, converted (all columns, or the key and
    ``only``); rows the load quarantined or the app changed are left out by key (see skipped)."""
    if not snapshot.has_table(spec.name):
        return
    present = [c for c in snapshot.columns(spec.name) if c in spec.column_names]
    columns = [c for c in present if not only or c in only or c in spec.primary_key]
    skip = skipped(conn, spec.name)
    key = spec.primary_key[0]
    select = f"SELECT {', '.join(map(quote, columns))} FROM {quote(spec.name)} {where}"
    for values in snapshot.query(select, params):
        row = comparable_row(spec, columns, values)
        if row is not None and keys.key_text([row.get(key)]) not in skip:
            yield row


def pg_rows(conn, query: str, params: tuple, spec: TableSpec) -> list[dict]:
    """The PostgreSQL answer, less the rows the app changed since the load (see skipped)."""
    skip = skipped(conn, spec.name)
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        set_json_loads(parse_exact, cur)
        rows = cur.execute(query, params).fetchall()
    return [r for r in rows if keys.key_text(r[c] for c in spec.primary_key) not in skip]


def uses_index(conn, query: str, params: tuple, index: str | tuple[str, ...]) -> tuple[bool, list[str]]:
    """Whether the plan uses the intended index (or one of several that serve the query equally)."""
    wanted = {index} if isinstance(index, str) else set(index)
    with conn.transaction(force_rollback=True):
        # Neither whole-table scans nor ordered walks of another index: only an index whose conditions
        # match the query's own can serve it, so the plan names the index that serves the predicate,
        # whatever the table's size (GIN indexes are only ever used this way).
        conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute("SET LOCAL enable_indexscan = off")
        conn.execute("SET LOCAL enable_indexonlyscan = off")
        plan = conn.execute("EXPLAIN (FORMAT JSON) " + query, params).fetchone()[0]
    used = []

    def walk(node):
        if "Index Name" in node:
            used.append(node["Index Name"])
        for child in node.get("Plans", ()):
            walk(child)

    walk(plan[0]["Plan"])
    return bool(wanted & set(used)), used


def compare(name, conn, query, params, index, expected, actual, extra=None) -> Outcome:
    uses, used = uses_index(conn, query, params, index)
    problems = []
    if (why := _not_fromsource_rows(conn)) is not None:  # the query and its plan are what is proven
        extra = {**(extra or {}), "values_compared": f"no: {why}"}
    elif expected != actual:
        problems.append(f"PostgreSQL answered {_short(actual)}, the source {_short(expected)}")
    if not uses:
        problems.append(f"the plan does not use {' or '.join(sorted({index} if isinstance(index, str) else set(index)))}"
                        f" (it uses {used or 'no index'})")  # fmt: skip
    metadata = {"query": query, "params": [str(p) for p in params], "index": index, "indexes_used": used}
    metadata.update(extra or {})
    metadata["answer_size"] = len(actual) if hasattr(actual, "__len__") else actual
    return Outcome(name, not problems, metadata, tuple(problems))


def _not_fromsource_rows(conn) -> str | None:
    """Why the source snapshot no longer describes the data (finalized, or a table proven against a
    baseline recorded from PostgreSQL since its load), or None when answers must equal the source's."""
    now = phase.current(conn)
    if now.name == phase.FINALIZED:
        return now.describe()
    rebased = conn.execute(
        "SELECT string_agg(DISTINCT b.table_name, ', ') FROM migration_audit.proof_baselines b"
        " WHERE b.recorded_at > (SELECT max(l.finished_at) FROM migration_audit.table_loads l"
        "                        WHERE l.table_name = b.table_name)"
    ).fetchone()[0]
    return (
        f"proven against a baseline recorded from PostgreSQL since the load: {rebased}" if rebased else None
    )


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."
