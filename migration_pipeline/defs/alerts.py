"""Alerts, wired: Dagster's own run-failure sensor tells people (watch/notify.py) when any run of this code
location fails: a migration, a reverify (scheduled or not), a sync or cutover, and every monitoring
incident (the postgres_monitor sensor raises each one as a failed postgres_alert run)."""

from __future__ import annotations

import os

from dagster import DefaultSensorStatus, RunFailureSensorContext, run_failure_sensor

from ..connect.settings import redact
from ..watch import notify

CONFIGURED = notify.Channels.from_env().configured  # Dagster needs the default status when the code loads


def failure_text(context: RunFailureSensorContext) -> tuple[str, str]:
    """(subject, text) of a failed run: what failed, why, where to look."""
    run = context.dagster_run
    kind = run.tags.get("alert/kind")
    subject = f"[migration] {'incident: ' + kind if kind else run.job_name + ' failed'}"
    lines = [
        f"Run {run.run_id} of job {run.job_name} failed.",
        f"Why: {context.failure_event.message or 'see the run'}",
    ]
    for event in context.get_step_failure_events():
        error = event.event_specific_data.error
        lines.append(
            f"Step {event.step_key}: {(error.message if error else event.message or '').strip()[:500]}"
        )
    ui = os.environ.get("ALERT_UI_URL")
    lines.append(
        f"Run: {ui.rstrip('/')}/runs/{run.run_id}" if ui else "Run: `migration-pipeline ui`, Runs tab"
    )
    return subject, redact("\n".join(lines))


@run_failure_sensor(
    name="alert_on_failure",
    monitor_all_code_locations=False,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING if CONFIGURED else DefaultSensorStatus.STOPPED,
    description=(
        "Tells people when a run fails (migrate, reverify, sync, cutover, and every monitoring incident): "
        "a Slack-compatible webhook (ALERT_WEBHOOK_URL) and/or e-mail (ALERT_SMTP_*). Runs by default once "
        "one of them is configured."
    ),
)
def alert_on_failure(context: RunFailureSensorContext) -> None:
    channels = notify.Channels.from_env()
    if not channels.configured:
        context.log.info("no alert channel configured (ALERT_WEBHOOK_URL, ALERT_SMTP_HOST)")
        return
    subject, text = failure_text(context)
    for delivery in notify.send(channels, subject, text):
        log = context.log.info if delivery.ok else context.log.error
        log(f"alert {'sent' if delivery.ok else 'NOT sent'} via {delivery.channel}: {delivery.detail}")
