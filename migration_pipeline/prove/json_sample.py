"""An independent look at JSON fidelity: Python's strict parse of the source against PostgreSQL's jsonb.

In:  a connection, the snapshot, a table spec and a sample size.
Out: :func:`compare_sample` takes the first rows of the table by key, renders their jsonb as text in
     PostgreSQL, parses both that text and the source JSON text in Python and compares them type-strictly
     (true is not 1, "1" is not 1, object keys and array order count; numbers compare by value). The full
     per-row comparison (jsonb.json_fidelity) parses both sides with PostgreSQL's parser; this sample
     makes sure that parser itself did not change structure, numbers or unicode.
Fails: psycopg errors propagate. Reads only.
"""

from __future__ import annotations

from decimal import Decimal

import psycopg
from psycopg import sql

from ..catalog import TableSpec
from ..move import audit, changes, keys
from ..move.json_rules import parse_exact as _parse
from ..move.source import Snapshot, quote


def same_json(a: object, b: object) -> bool:
    """JSON equality that tells types apart (Python's True == 1 would not); numbers (exact decimals,
    see json_rules.parse_exact) compare by value, so 1E2 equals the 100 jsonb writes for it; iterative,
    so a value nested as deep as the load admits compares without exhausting Python's stack."""
    pending = [(a, b)]
    while pending:
        a, b = pending.pop()
        if isinstance(a, bool) or isinstance(b, bool):
            if not (type(a) is type(b) and a == b):
                return False
        elif isinstance(a, int | float | Decimal) and isinstance(b, int | float | Decimal):
            if a != b:
                return False
        elif type(a) is not type(b):
            return False
        elif isinstance(a, dict):
            if a.keys() != b.keys():
                return False
            pending.extend((a[k], b[k]) for k in a)
        elif isinstance(a, list):
            if len(a) != len(b):
                return False
            pending.extend(zip(a, b, strict=True))
        elif a != b:
            return False
    return True


def compare_sample(
    conn: psycopg.Connection,
    snapshot: Snapshot,
    spec: TableSpec,
    json_columns: list[str],
    size: int = 2_000,
    run_id: str | None = None,
) -> dict:
    """Compare the jsonb of the first ``size`` rows by key with the source JSON of the rows the load of
    ``run_id`` did not quarantine (a quarantined row may share its key with the loaded one)."""
    pk = spec.primary_key[0]
    cols = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in json_columns)
    rows = conn.execute(
        sql.SQL("SELECT {key}, {cols} FROM {t} WHERE {key} NOT IN ({changed}) ORDER BY {pk} LIMIT %s").format(
            key=keys.key_sql([pk]),
            pk=sql.Identifier(pk),
            cols=cols,
            t=sql.Identifier(spec.name),
            changed=changes.changed_keys_sql(spec.name),
        ),
        (size,),
    ).fetchall()
    stored = {r[0]: r[1:] for r in rows}
    select = f"SELECT rowid, {quote(pk)}, {', '.join(map(quote, json_columns))} FROM {quote(spec.name)}"
    quarantined = audit.rejected_rowids(conn, spec.name, run_id)
    as_source = int if spec.column(pk).kind == "integer" else str  # so SQLite can use its key index
    differing = []
    stored_keys = list(stored)
    for start in range(0, len(stored_keys), 500):
        chunk = stored_keys[start : start + 500]
        where = f" WHERE {quote(pk)} IN ({','.join('?' * len(chunk))})"
        for rowid, key, *source in snapshot.query(select + where, [as_source(k) for k in chunk]):
            key = keys.key_text([key])
            if key not in stored or rowid in quarantined:
                continue
            for name, src, pg in zip(json_columns, source, stored[key], strict=True):
                src_value = (
                    None if src is None else _parse(src) if isinstance(src, str) else Decimal(repr(src))
                )
                pg_value = None if pg is None else _parse(pg)
                if not same_json(src_value, pg_value):
                    differing.append({"key": key, "column": name})
    return {"sampled_rows": len(stored), "differing": differing[:10], "differing_count": len(differing)}
