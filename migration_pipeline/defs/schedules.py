"""Re-verification on a schedule: the checks-only job, daily by default, on by default.

REVERIFY_CRON (default ``0 3 * * *``, UTC) sets when; REVERIFY_SCHEDULE=off starts it stopped.
Both are read like the other settings (environment, then .env.migration)."""

from collections.abc import Mapping

from dagster import DefaultScheduleStatus, ScheduleDefinition

from ..connect.settings import read_environment
from .jobs import reverify_job

DEFAULT_CRON = "0 3 * * *"


def reverify_schedule(env: Mapping[str, str] | None = None) -> ScheduleDefinition:
    env = read_environment() if env is None else env
    stopped = env.get("REVERIFY_SCHEDULE", "").lower() in ("off", "false", "0", "stopped")
    return ScheduleDefinition(
        name="reverify_daily",
        job=reverify_job,
        cron_schedule=env.get("REVERIFY_CRON") or DEFAULT_CRON,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.STOPPED if stopped else DefaultScheduleStatus.RUNNING,
        description="Re-runs every table's checks (no data moved); a failed blocking check fails the run.",
    )
