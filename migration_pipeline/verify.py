"""Verification of a migrated table against its recorded load (the numbers asset checks compare).

In:  a connection to the target and a table name.
Out: :func:`conservation` returns the latest ``table_loads`` numbers of the table, the rows quarantined
     by that load as found in ``rejected_rows``, the rows in the table now, and whether they agree.
Fails: psycopg errors propagate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import psycopg
from psycopg import sql

from . import audit


@dataclass(frozen=True)
class Conservation:
    table: str
    run_id: str | None
    source_rows: int
    loaded_rows: int
    rejected_rows: int
    quarantined_in_audit: int
    rows_in_table: int

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
        if self.rows_in_table != self.loaded_rows:
            found.append(f"{self.loaded_rows} rows loaded but the table holds {self.rows_in_table}")
        return found

    def as_metadata(self) -> dict:
        return asdict(self)


def conservation(conn: psycopg.Connection, table: str) -> Conservation:
    load = audit.latest_load(conn, table) or {}
    run_id = load.get("run_id")
    in_audit = conn.execute(
        "SELECT count(*) FROM migration_audit.rejected_rows WHERE run_id = %s AND table_name = %s",
        (run_id, table),
    ).fetchone()[0]
    rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
    return Conservation(
        table=table,
        run_id=run_id,
        source_rows=load.get("source_rows", 0),
        loaded_rows=load.get("loaded_rows", 0),
        rejected_rows=load.get("rejected_rows", 0),
        quarantined_in_audit=in_audit,
        rows_in_table=rows,
    )
