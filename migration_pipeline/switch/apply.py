"""Applying a change set to PostgreSQL, one table at a time, inside the sync's single transaction.

In:  the source as synced (:class:`~migration_pipeline.switch.changeset.NewState`), a table's latest
     ``table_loads`` row and what the tables before it in foreign-key order left pending.
Out: :func:`apply_table` converts again only the rows whose outcome may have changed (the change set's
     candidates, rows whose parent key this sync touched, rows removed under a parent that left), with
     the load's staging and quarantine; deletes, updates and inserts what differs; carries the
     checksum forward exactly (the rows about to change are hashed out, the staged ones in) and the
     previous run's verdicts on untouched rows; then finishes the table as a full load does
     (move/finish.py: rejected rows, conservation, sequences, a 'delta' ``table_loads`` row).
Fails: :class:`~migration_pipeline.switch.changeset.DeltaError` when the delta cannot be exact (the last
     load covered other columns, a tally or the carried checksum does not add up); the caller rolls the
     whole sync back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from psycopg import sql

from ..catalog import Catalog, TableSpec
from ..move import audit, checksums, keys, publish, quarantine
from ..move.convert import Rejected, converter_for
from ..move.finish import LoadResult, finish_table
from ..move.stage import Spool, create_stage, drop_stage, stage_rows
from .changeset import DeltaError, NewState

MODE = "delta"
_TOUCHED = sql.SQL("SELECT rowid FROM _touched")  # rowids whose verdict this sync decides anew


@dataclass
class TableDelta:
    table: str
    added: int = 0  # source rows new or changed since the baseline (their new versions)
    removed: int = 0  # source rows gone or changed (their old versions)
    restaged: int = 0  # rows converted again: changed, sharing a key, orphaned, or quarantined before
    inserted: int = 0
    updated: int = 0
    deleted: int = 0  # target rows removed: gone from the source, or now quarantined
    carried: int = 0  # quarantined rows the sync did not touch: their verdict carried from the last run
    result: LoadResult | None = None


def _pk(spec: TableSpec) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, spec.primary_key))


def _affected(table: str) -> sql.Identifier:
    return sql.Identifier(f"_affected_{table}")


def _recheck(conn, catalog: Catalog, spec: TableSpec, run_id: str) -> list[int]:
    """Rowids quarantined by ``run_id`` for a foreign key whose parent key this sync touched (the parent
    may now exist, or be quarantined, or be gone): their verdict is decided again. Every other verdict
    holds while the row is unchanged: conversion and CHECK rejections depend on the row alone, and
    duplicate keys are decided again with every row sharing a key with a changed one."""
    rowids: list[int] = []
    for fk in spec.foreign_keys:
        kinds = [f"{fk.columns[0]}: {quarantine.ORPHAN}", f"{fk.columns[0]}: {quarantine.PARENT_QUARANTINED}"]
        where = sql.SQL("r.run_id = %s AND r.table_name = %s AND r.kind = ANY(%s)")
        if len(fk.columns) == 1 and fk.parent_columns == catalog.table(fk.parent).primary_key:
            where = sql.SQL("{} AND r.raw_row->>{} IN (SELECT {} FROM {})").format(
                where, sql.Literal(fk.columns[0]), keys.key_sql(fk.parent_columns), _affected(fk.parent)
            )
        query = sql.SQL("SELECT r.source_rowid FROM migration_audit.rejected_rows r WHERE {}").format(where)
        rowids += [r[0] for r in conn.execute(query, (run_id, spec.name, kinds))]
    return rowids


def _copy_rows(conn, statement: sql.Composable, rows: Sequence[tuple]) -> None:
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _cascade(
    conn,
    catalog: Catalog,
    table: str,
    doomed: sql.Composable,
    pending: dict,
    removed: Counter,
    hashes: Counter,
) -> None:
    """Take out of the referencing tables the rows whose parent rows ``doomed`` (a query of the
    referenced key values) leave; they are converted again when their table's turn comes (and end up
    quarantined as orphans, as in a full load)."""

    def remove(child: TableSpec, condition: sql.Composable) -> None:
        rows = conn.execute(
            sql.SQL("DELETE FROM {t} t WHERE {w} RETURNING {pk}, {h}").format(
                t=sql.Identifier(child.name), w=condition, pk=_pk(child),
                h=checksums.row_hash(child, pending["columns"][child.name], "t"),
            )
        ).fetchall()  # fmt: skip
        for *key, row_hash in rows:
            pending["keys"].setdefault(child.name, []).append(tuple(key))
            removed[child.name] += 1
            hashes[child.name] += row_hash

    publish.cascade(catalog, table, doomed, remove)


def apply_table(
    conn, catalog: Catalog, spec: TableSpec, state: NewState, run_id: str, previous: dict, pending: dict,
    removed: Counter, hashes: Counter, origin: dict,
) -> TableDelta:  # fmt: skip
    """Bring ``spec``'s table up to date (see module doc). ``previous``: its latest table_loads row;
    ``pending``: keys removed under a parent per table, and the columns each table's checksum covers;
    ``removed``/``hashes``: rows (and their hashes) removed so far per table by cascades; ``origin``: the
    change set's provenance for the table_loads row."""
    t = sql.Identifier(spec.name)
    delta = TableDelta(spec.name)
    result = LoadResult(table=spec.name, run_id=run_id, source_present=spec.name in state.tables)
    result.started_at = datetime.now(UTC)
    columns = state.tables.get(spec.name, ())
    pk = _pk(spec)
    before = checksums.Checksum.parse(previous["checksum"]) if previous["checksum"] else None
    if before is None or before.columns != tuple(columns):
        raise DeltaError(f"{spec.name}: its last load covered other columns: run a full migration")
    # every key whose target row may change: the candidates' and the old versions' (kept until commit:
    # the referencing tables re-check their orphans against it)
    affected_table = _affected(spec.name)
    conn.execute(
        sql.SQL("CREATE TEMP TABLE {a} ON COMMIT DROP AS SELECT {pk} FROM {t} WITH NO DATA").format(
            a=affected_table, pk=pk, t=t
        )
    )
    conn.execute("CREATE TEMP TABLE _touched (rowid bigint) ON COMMIT DROP")
    recheck, keys_of_orphans = [], pending["keys"].pop(spec.name, [])
    if columns:
        delta.added, delta.removed = state.changed(spec.name)
        recheck = _recheck(conn, catalog, spec, previous["run_id"])
    changed = delta.added or delta.removed or recheck or keys_of_orphans
    with Spool(columns) as spool:
        if changed:
            delta.restaged = state.candidates(spec, columns, recheck, keys_of_orphans)
            affected_keys = _converted_keys(
                spec, state.candidate_keys(spec) + state.old_keys(spec.name, spec.primary_key)
            )
            _copy_rows(conn, sql.SQL("COPY {} ({}) FROM STDIN").format(affected_table, pk), affected_keys)
            _copy_rows(conn, sql.SQL("COPY _touched FROM STDIN"), state.touched_rowids(spec.name))
            stage = create_stage(conn, spec, columns)
            batches = lambda: state.candidate_batches(spec.name, columns)  # noqa: E731
            stage_rows(conn, batches, spec, columns, stage, spool, None)
            quarantine.constraint_rejections(conn, catalog, spec, columns, stage, spool, state)
            for temp in (stage, affected_table):  # statistics, so joins with the big table use its keys
                conn.execute(sql.SQL("ANALYZE {}").format(temp))
            affected = sql.SQL("({pk}) IN (SELECT {pk} FROM {a})").format(pk=pk, a=affected_table)
            old_rows = checksums.checksum(conn, t, spec, columns, affected)  # the rows about to change
            doomed = sql.SQL("SELECT {pk} FROM {a} a WHERE ({pk}) NOT IN (SELECT {pk} FROM {s})").format(
                pk=pk, a=affected_table, s=stage
            )
            _cascade(conn, catalog, spec.name, doomed, pending, removed, hashes)
            delta.deleted = conn.execute(
                sql.SQL("DELETE FROM {t} WHERE ({pk}) IN ({d})").format(t=t, pk=pk, d=doomed)
            ).rowcount
            _write_staged(conn, spec, columns, stage, delta)
            # afterwards the rows with those keys are exactly the staged ones (the load's checksum is also
            # taken on its stage: the same row text)
            new_rows = checksums.checksum(conn, stage, spec, columns)
            drop_stage(conn, stage)
            rows = before.rows - old_rows.rows - removed[spec.name] + new_rows.rows
            total = before.total - old_rows.total - hashes[spec.name] + new_rows.total
            result.checksum = str(checksums.Checksum(rows, total, tuple(columns)))
        else:  # nothing changed in the table or its parents: its content and verdicts stand
            result.checksum = previous["checksum"]
        result.source_rows = state.count(spec.name) if columns else 0
        # the table's rows, from the statements' own row counts (a count(*) would read all of a big table);
        # two independent tallies, from the rows' keys and from the statements, must agree (finish_table)
        result.loaded_rows = previous["loaded_rows"] - delta.deleted - removed[spec.name] + delta.inserted
        if checksums.Checksum.parse(result.checksum).rows != result.loaded_rows:
            raise DeltaError(f"{spec.name}: the carried checksum does not match the table; rolled back")

        def carry() -> dict[str, int]:
            carried = audit.carry_rejections(conn, spec.name, previous["run_id"], run_id, _TOUCHED)
            delta.carried = sum(carried.values())
            return carried

        def refuse(result: LoadResult) -> DeltaError:
            return DeltaError(
                f"{spec.name}: {result.source_rows} source rows but {result.loaded_rows} in the table + "
                f"{result.rejected_rows} quarantined after the delta ({delta.added} rows new or changed, "
                f"{delta.removed} gone or changed, {delta.restaged} converted again, {delta.inserted} inserted, "
                f"{delta.deleted} deleted, {removed[spec.name]} removed under a parent, {delta.carried} "
                f"verdicts carried); rolled back (run a full migration)"
            )

        finish_table(conn, spec, result, spool, origin, refuse, mode=MODE, carry=carry, analyze=False)
    conn.execute("DROP TABLE _touched")
    delta.result = result
    return delta


def _write_staged(
    conn, spec: TableSpec, columns: Sequence[str], stage: sql.Identifier, delta: TableDelta
) -> None:
    """Update the rows whose values changed and insert the new ones, from the stage (the rows that leave
    are already deleted); counts into ``delta``."""
    t = sql.Identifier(spec.name)
    others = [c for c in columns if c not in spec.primary_key]
    on = sql.SQL(" AND ").join(
        sql.SQL("{t}.{c} = s.{c}").format(t=t, c=sql.Identifier(c)) for c in spec.primary_key
    )
    publish.release_unique_values(conn, spec, columns, stage)
    if others:
        delta.updated = conn.execute(
            sql.SQL("UPDATE {t} SET {set} FROM {s} s WHERE {on} AND ({old}) IS DISTINCT FROM ({new})").format(
                t=t,
                set=sql.SQL(", ").join(sql.SQL("{c} = s.{c}").format(c=sql.Identifier(c)) for c in others),
                s=stage,
                on=on,
                old=sql.SQL(", ").join(sql.SQL("{}.{}").format(t, sql.Identifier(c)) for c in others),
                new=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in others),
            )
        ).rowcount
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    delta.inserted = conn.execute(
        sql.SQL(
            "INSERT INTO {t} ({cols}) SELECT {cols} FROM {s} s WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE {on})"
        ).format(t=t, cols=cols, s=stage, on=on)
    ).rowcount


def _converted_keys(spec: TableSpec, raw: list[tuple]) -> list[tuple]:
    converters = [converter_for(spec.column(c).kind, spec.column(c).max_length) for c in spec.primary_key]
    converted = []
    for row in raw:
        try:
            converted.append(tuple(convert(v) for convert, v in zip(converters, row, strict=True)))
        except Rejected:
            continue  # a key that never loaded
    return converted
