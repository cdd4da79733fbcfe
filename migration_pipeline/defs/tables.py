"""The table assets' shared wiring: their keys, the metadata of a finished load and its progress in the log."""

import time

from dagster import AssetExecutionContext, AssetKey, MetadataValue

from ..catalog import TableSpec
from ..move import native
from ..move.code_version import code_version
from ..move.finish import LoadResult
from ..prove import quarantined
from ..prove.provenance import load_sql, quarantine_sql
from .lineage import column_lineage, lineage_markdown, table_schema

SNAPSHOT_KEY = AssetKey(["sqlite", "snapshot"])


def source_key(table: str) -> AssetKey:
    return AssetKey(["sqlite", table])


CODE_VERSION = code_version()
# which fast paths read and converted the values: the same values either way, the compiled ones with less
# CPU on both sides (read by csrc/read.c, sent as binary COPY)
CONVERSION = (
    "compiled fast paths (move/csrc): SQLite read into columns, binary COPY"
    if native.compiled is not None
    else "Python fast paths only, text COPY: move/csrc did not build (no C compiler or no SQLite headers"
    " at install?); same values, more CPU"
)
PROGRESS_EVERY_S = 5.0


def target_key(table: str) -> AssetKey:
    return AssetKey(["postgres", table])


def progress_logger(context: AssetExecutionContext, total: int):
    start = last = time.monotonic()

    def report(rows: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < PROGRESS_EVERY_S:
            return
        last = now
        rate = rows / (now - start)
        eta = (total - rows) / rate if rate else float("inf")
        context.log.info(f"{rows:,}/{total:,} rows read ({rate:,.0f} rows/s, ETA {eta:,.0f} s)")

    return report


def _metadata(spec: TableSpec, result: LoadResult) -> dict:
    loaded = (
        [c for c in spec.column_names if c not in result.defaulted_columns] if result.source_present else []
    )
    return {
        "dagster/table_name": f"public.{spec.name}",
        "dagster/row_count": result.loaded_rows,
        "source_present": result.source_present,
        "source_rows": result.source_rows,
        "loaded_rows": result.loaded_rows,
        "rejected_rows": result.rejected_rows,
        "rejected_by_reason": MetadataValue.json(result.rejected_by_reason),
        "duration_s": round(result.seconds, 3),
        "rows_per_s": round(result.rows_per_second, 1),
        "conversion": CONVERSION,
        "defaulted_columns": MetadataValue.json(list(result.defaulted_columns)),
        "cascaded_deletes": MetadataValue.json(result.cascaded_deletes),
        "removed_rows": result.removed_rows,
        "shrink_confirmed": MetadataValue.json(result.shrink_confirmed or {}),
        "dagster/column_lineage": column_lineage(source_key(spec.name), loaded),
        "column_lineage": MetadataValue.md(lineage_markdown(spec, source_key(spec.name), loaded)),
        "run_id": result.run_id,
        "code_version": CODE_VERSION,
        "source_path": result.origin.get("source_path") or "not recorded",
        "snapshot_sha256": result.origin.get("snapshot_sha256"),
        "table_load_sql": MetadataValue.md(f"```sql\n{load_sql(result.run_id, spec.name)}\n```"),
        "quarantine_sql": MetadataValue.md(f"```sql\n{quarantine_sql(result.run_id, spec.name)}\n```"),
        "provenance": "migration-pipeline provenance --table " + spec.name,
    }


def definition_metadata(spec: TableSpec) -> dict:
    return {
        "dagster/column_schema": table_schema(spec),
        "dagster/table_name": f"public.{spec.name}",
        "column_lineage": MetadataValue.md(lineage_markdown(spec, source_key(spec.name), spec.column_names)),
    }


def description(spec: TableSpec) -> str:
    return (
        f"PostgreSQL table `{spec.name}`, replaced in one transaction with the snapshot's rows: every value "
        "converted by the value rules, bulk-loaded with COPY; rows that cannot load exactly (bad values, "
        "orphans, constraint breaches) are quarantined in migration_audit.rejected_rows with a reason."
    )


def reported(context, spec: TableSpec, result: LoadResult, conn) -> dict:
    """Log what an operator must know of a finished load; returns its materialization metadata (with a
    preview of the rows the load left quarantined, read through ``conn``)."""
    if not result.source_present:
        context.log.info(f"source has no table {spec.name}: created empty")
    if result.rejected_rows:
        context.log.warning(
            f"{spec.name}: {result.rejected_rows} rows quarantined {result.rejected_by_reason}"
        )
    if result.shrink_confirmed:
        context.log.warning(
            f"{spec.name}: shrink beyond the guard's limit, confirmed by the operator and recorded in "
            f"migration_audit.table_loads: {result.shrink_confirmed}"
        )
    if result.cascaded_deletes:
        context.log.warning(
            f"{spec.name}: rows gone from the source were still referenced; removed dependants "
            f"{result.cascaded_deletes} (re-materialize those tables)"
        )
    total, preview = quarantined.preview_markdown(conn, spec.name)
    return {
        **_metadata(spec, result),
        "quarantined_rows": total,
        "quarantine_preview": MetadataValue.md(preview),
    }
