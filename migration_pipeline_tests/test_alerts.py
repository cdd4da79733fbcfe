"""Alerts reach people: a real monitoring incident and a failed reverify run arrive, through Dagster's
run-failure sensor, at a webhook (an HTTP server on 127.0.0.1) and an SMTP server (aiosmtpd on 127.0.0.1,
with a login); secrets stay out of them; one channel failing does not stop the other."""

from __future__ import annotations

import json
import socket
import threading
import time
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, HTTPServer

import psycopg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from dagster import (
    DagsterEventType,
    DagsterInstance,
    build_run_status_sensor_context,
    build_sensor_context,
)

from migration_pipeline.defs.alerts import alert_on_failure
from migration_pipeline.defs.connect import MigrationResource
from migration_pipeline.defs.watch import postgres_alert, postgres_monitor
from migration_pipeline.watch import notify

SMTP_PASSWORD = "smtp-Secret-42"
HOOK_SECRET = "T000/B000/XXXXsecretXXXX"


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, self.headers["Content-Type"], json.loads(body)))
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    server.received, server.status = [], 200
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


class _Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.messages.append((session.authenticated, envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


def _login(server, session, envelope, mechanism, auth_data):
    return AuthResult(success=auth_data.login == b"alerts" and auth_data.password == SMTP_PASSWORD.encode())


@pytest.fixture
def inbox():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = _Inbox()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, authenticator=_login, auth_require_tls=False
    )
    controller.start()
    yield port, handler
    controller.stop()


@pytest.fixture
def channels(webhook, inbox, monkeypatch):
    port, _ = inbox
    env = {
        "ALERT_WEBHOOK_URL": f"http://127.0.0.1:{webhook.server_port}/services/{HOOK_SECRET}",
        "ALERT_SMTP_HOST": "127.0.0.1",
        "ALERT_SMTP_PORT": str(port),
        "ALERT_SMTP_TLS": "none",  # a relay on localhost
        "ALERT_SMTP_USER": "alerts",
        "ALERT_SMTP_PASSWORD": SMTP_PASSWORD,
        "ALERT_SMTP_FROM": "pipeline@example.org",
        "ALERT_SMTP_TO": "oncall@example.org, dba@example.org",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return notify.Channels.from_env()


def _alert_for_failed_run(instance: DagsterInstance, run_id: str) -> None:
    """Evaluate alert_on_failure on a failed run, as the daemon does."""
    (record,) = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_FAILURE).records
    context = build_run_status_sensor_context(
        sensor_name="alert_on_failure",
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),
        dagster_event=record.event_log_entry.dagster_event,
    ).for_run_failure()
    alert_on_failure(context)


def _delivered(webhook, inbox, server, channels) -> tuple[str, object]:
    _, handler = inbox
    ((path, content_type, payload),) = webhook.received
    assert path == f"/services/{HOOK_SECRET}" and content_type == "application/json"
    assert set(payload) == {"text"}  # Slack's incoming-webhook shape
    ((authenticated, recipients, mail),) = handler.messages
    assert authenticated and recipients == ["oncall@example.org", "dba@example.org"]
    everything = payload["text"] + mail["Subject"] + mail.get_payload()
    for secret in (SMTP_PASSWORD, HOOK_SECRET, server["password"]):
        assert secret not in everything
    return payload["text"], mail


def test_a_monitoring_incident_reaches_webhook_and_mail(
    server, settings, channels, webhook, inbox, monkeypatch
):
    monkeypatch.setenv("PG_DATABASE", settings.database)
    monkeypatch.setenv("MONITOR_TRANSACTION_AGE_S", "0.5")
    with psycopg.connect(**{**server, "dbname": settings.database}) as holder:
        holder.execute("SELECT 1")  # a transaction left open: the incident
        time.sleep(1.0)
        instance = DagsterInstance.ephemeral()
        with build_sensor_context(instance=instance, resources={"migration": MigrationResource()}) as context:
            result = postgres_monitor(context)
        holder.rollback()
    (request,) = [r for r in result.run_requests if r.tags["alert/kind"] == "long_transaction"]
    run = postgres_alert.execute_in_process(
        run_config=request.run_config, instance=instance, tags=request.tags, raise_on_error=False
    )
    assert not run.success
    _alert_for_failed_run(instance, run.run_id)
    text, mail = _delivered(webhook, inbox, server, channels)
    assert text.startswith("*[migration] incident: long_transaction*")
    assert mail["Subject"] == "[migration] incident: long_transaction"
    assert run.run_id in text and "open for" in text.lower() + mail.get_payload().lower()


def test_a_failed_reverify_reaches_webhook_and_mail(server, settings, channels, webhook, inbox, monkeypatch):
    """reverify of a database nothing was migrated into: blocking checks fail, the run fails, people hear."""
    from migration_pipeline.definitions import defs

    monkeypatch.setenv("PG_DATABASE", settings.database)
    instance = DagsterInstance.ephemeral()
    run = defs.resolve_job_def("reverify").execute_in_process(instance=instance, raise_on_error=False)
    assert not run.success
    _alert_for_failed_run(instance, run.run_id)
    text, mail = _delivered(webhook, inbox, server, channels)
    assert (
        text.startswith("*[migration] reverify failed*") and mail["Subject"] == "[migration] reverify failed"
    )
    assert f"Run {run.run_id} of job reverify failed." in mail.get_payload()


def test_one_channel_failing_does_not_stop_the_other(channels, webhook, inbox):
    webhook.status = 500
    deliveries = notify.send(channels, "subject", "text")
    assert [(d.ok, d.detail) for d in deliveries][0] == (False, "HTTP 500")
    assert deliveries[1].ok and len(inbox[1].messages) == 1
    assert HOOK_SECRET not in repr(deliveries) + repr(channels) and SMTP_PASSWORD not in repr(channels)
    wrong = notify.Channels(
        None, notify.Smtp("127.0.0.1", inbox[0], "a@b", ("c@d",), "alerts", "wrong-pw", "none")
    )
    (refused,) = notify.send(wrong, "subject", "text")
    assert not refused.ok and "wrong-pw" not in refused.detail
