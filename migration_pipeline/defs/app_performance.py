"""Dagster wiring of the app's workload on SQLite and PostgreSQL: the ``app_performance`` job and its asset.

The asset ``audit/app_performance`` is declared (so it has a page, lineage and history) and materialized by
the job's one op, never by "Materialize all": a measurement takes minutes and is asked for on purpose.
"""

import base64

from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetSpec,
    Config,
    MetadataValue,
    OpExecutionContext,
    job,
    op,
)

from ..catalog import load_catalog
from ..connect.local_postgres import state_dir
from ..prove.report import keep
from ..watch import app_performance, app_report
from .connect import MigrationResource
from .tables import target_key

APP_PERFORMANCE_KEY = AssetKey(["audit", "app_performance"])

app_performance_spec = AssetSpec(
    APP_PERFORMANCE_KEY,
    deps=[target_key(name) for name in load_catalog().names],
    group_name="audit",
    kinds={"markdown"},
    description=(
        "The app's workload (its adapter operations, in its proportions) on a copy of the SQLite file and on "
        "the same data in PostgreSQL, at several concurrencies: operations, errors, p50/p95/p99 latency per "
        "backend and operation (migration_audit.app_performance), the verdict, a chart and the PostgreSQL "
        "plans. Materialized by the app_performance job (migration-pipeline app-performance)."
    ),
)


class AppPerformanceConfig(Config):
    concurrency: list[int] = list(app_performance.LEVELS)
    seconds: float = 10.0  # measured per backend and concurrency, after the warm-up
    warmup: float = 2.0
    seed: int = 1


@op(description="Play the app's workload on SQLite and on PostgreSQL; record and judge the numbers.")
def measure_app_performance(
    context: OpExecutionContext, config: AppPerformanceConfig, migration: MigrationResource
) -> None:
    rows, plans = app_performance.run(
        migration.settings,
        state_dir() / "app-performance",
        context.run_id,
        levels=tuple(config.concurrency),
        seconds=config.seconds,
        warmup=config.warmup,
        seed=config.seed,
        log=context.log.info,
    )
    png = app_report.chart(rows)
    text = app_report.markdown(rows, plans, "data:image/png;base64," + base64.b64encode(png).decode())
    path = keep("app-performance", context.run_id, text)  # self-contained: the chart is inside
    chart = path.with_suffix(".png")  # and beside it, to share on its own
    chart.write_bytes(png)
    pairs = app_report.compare(rows)
    context.log_event(
        AssetMaterialization(
            APP_PERFORMANCE_KEY,
            metadata={
                "verdict": MetadataValue.md(text),
                "path": MetadataValue.path(str(path)),
                "chart": MetadataValue.path(str(chart)),
                "equal_or_better": sum(p.equal_or_better for p in pairs),
                "pairs": len(pairs),
                "postgresql_errors": sum(m.errors for m in rows if m.backend == "postgresql"),
                "sqlite_errors": sum(m.errors for m in rows if m.backend == "sqlite"),
                "audit_sql": MetadataValue.md(
                    f"```sql\nSELECT * FROM migration_audit.app_performance WHERE run_id = '{context.run_id}'"
                    "\nORDER BY concurrency, operation, backend;\n```"
                ),
            },
        )
    )


@job(
    name="app_performance",
    description="The app's workload on a copy of the SQLite file and on PostgreSQL, side by side (the seed's "
    "'equal or better performance'). Writes neither the app's file nor the migrated tables.",
)
def app_performance_job() -> None:
    measure_app_performance()
