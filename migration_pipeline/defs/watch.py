"""Watch, wired: the postgres_monitor sensor, its observed asset, and the alert job it launches."""

import orjson
from dagster import (
    AssetKey,
    AssetObservation,
    AssetSpec,
    Config,
    DefaultSensorStatus,
    Failure,
    MetadataValue,
    OpExecutionContext,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    job,
    op,
    sensor,
)

from ..watch import monitor
from .connect import MigrationResource

HEALTH_KEY = AssetKey(["monitoring", "postgres_health"])

postgres_health = AssetSpec(
    HEALTH_KEY,
    group_name="monitoring",
    kinds={"postgres"},
    description=(
        "PostgreSQL's health as the postgres_monitor sensor sees it on every tick: connections, the "
        "pipeline's pool, slow queries, transactions, locks, deadlocks, cache hit ratio. Each tick is an "
        "observation (plotted in the UI) and a row of migration_audit.monitor_samples."
    ),
)


class AlertConfig(Config):
    kind: str
    subject: str
    message: str
    numbers: str  # JSON


@op
def raise_alert(context: OpExecutionContext, config: AlertConfig) -> None:
    """Fail, visibly, with the alert's message and numbers: one run per incident."""
    numbers = orjson.loads(config.numbers)
    context.log.error(f"{config.kind} ({config.subject}): {config.message}")
    raise Failure(
        description=f"{config.kind}: {config.message}",
        metadata={"kind": config.kind, "subject": config.subject, "numbers": MetadataValue.json(numbers)},
    )


@job(description="Raised by the postgres_monitor sensor when a threshold is crossed; fails with the numbers.")
def postgres_alert():
    raise_alert()


def _headline(sample: dict) -> dict:
    conns, xacts, queries = sample["connections"], sample["transactions"], sample["queries"]
    slowest = (queries.get("slowest_by_mean") or [{}])[0] if queries.get("available") else {}
    oldest = xacts.get("oldest_transaction") or {}
    return {
        "connections": conns["total"],
        "connection_utilization": conns["utilization"],
        "active": conns["active"],
        "idle_in_transaction": conns["idle_in_transaction"],
        "lock_waits": len(xacts["lock_waits"]),
        "new_commits": xacts["new_commits"],
        "new_rollbacks": xacts["new_rollbacks"],
        "new_deadlocks": xacts["new_deadlocks"],
        "oldest_transaction_s": round(oldest.get("age_s") or 0.0, 1),
        "slowest_mean_ms": slowest.get("mean_ms", 0.0),
        "cache_hit_ratio": xacts["cache_hit_ratio"] or 1.0,
    }


SENSOR = monitor.SensorSetting.from_env()  # Dagster needs these when the code location loads


@sensor(
    job=postgres_alert,
    minimum_interval_seconds=SENSOR.interval_s,
    default_status=DefaultSensorStatus.RUNNING if SENSOR.running else DefaultSensorStatus.STOPPED,
    description="Samples PostgreSQL's health, records it, and launches postgres_alert once per incident.",
)
def postgres_monitor(context: SensorEvaluationContext, migration: MigrationResource) -> SensorResult:
    state = orjson.loads(context.cursor) if context.cursor else {}
    with migration.connection() as conn:
        sample = monitor.take_sample(conn, migration.pool(), state.get("previous"))
        alerts = monitor.evaluate(sample, monitor.Thresholds.from_env())
        fresh, still_open = monitor.new_incidents(alerts, set(state.get("open", [])))
        monitor.record(conn, sample, fresh)
    cursor = orjson.dumps(
        {"previous": {"transactions": sample["transactions"]}, "open": sorted(still_open)}
    ).decode()
    observation = AssetObservation(asset_key=HEALTH_KEY, metadata=_headline(sample))
    if not fresh:
        reason = (
            f"no new incident ({len(still_open)} still open: {', '.join(sorted(still_open))})"
            if still_open
            else "all thresholds respected"
        )
        if not sample["queries"].get("available"):
            reason += "; pg_stat_statements is not available (add it to shared_preload_libraries), so slow queries are not watched"
        return SensorResult(skip_reason=reason, cursor=cursor, asset_events=[observation])
    requests = [
        RunRequest(
            run_key=f"{alert.incident}@{sample['sampled_at']}",
            run_config={
                "ops": {
                    "raise_alert": {
                        "config": {
                            "kind": alert.kind,
                            "subject": alert.subject,
                            "message": alert.message,
                            "numbers": orjson.dumps(alert.numbers, default=str).decode(),
                        }
                    }
                }
            },
            tags={"alert/kind": alert.kind},
        )  # fmt: skip
        for alert in fresh
    ]
    return SensorResult(run_requests=requests, cursor=cursor, asset_events=[observation])
