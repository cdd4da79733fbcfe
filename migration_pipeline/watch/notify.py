"""Alerts that reach people: a Slack-compatible webhook and/or e-mail over SMTP.

In:  the channels from the environment (``.env.migration`` too): ``ALERT_WEBHOOK_URL`` (a Slack, Mattermost
     or any endpoint taking ``{"text": ...}`` JSON); ``ALERT_SMTP_HOST``, ``ALERT_SMTP_PORT`` (default 587),
     ``ALERT_SMTP_USER``, ``ALERT_SMTP_PASSWORD``, ``ALERT_SMTP_FROM``, ``ALERT_SMTP_TO`` (comma list),
     ``ALERT_SMTP_TLS`` (``starttls`` default, ``ssl``, or ``none`` for a relay on localhost); a subject
     and a text.
Out: :func:`send` delivers to every configured channel and returns one :class:`Delivery` per channel;
     one channel failing never stops the other.
Fails: nothing raises: a channel that cannot deliver is a Delivery with ``ok`` False and a reason that
     names neither the webhook's path (Slack's carries its secret) nor the SMTP password.
"""

from __future__ import annotations

import smtplib
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage

import orjson

from ..connect.settings import ConfigError, read_environment, redact

TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Smtp:
    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    user: str | None = None
    password: str | None = None
    tls: str = "starttls"  # starttls | ssl | none

    def __repr__(self) -> str:  # never the password
        return f"Smtp({self.host}:{self.port}, to {', '.join(self.recipients)}, tls {self.tls})"


@dataclass(frozen=True)
class Channels:
    webhook_url: str | None = None
    smtp: Smtp | None = None

    @property
    def configured(self) -> bool:
        return bool(self.webhook_url or self.smtp)

    def __repr__(self) -> str:
        return f"Channels(webhook={shown_url(self.webhook_url)}, smtp={self.smtp!r})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Channels:
        env = read_environment() if env is None else env
        smtp = None
        if env.get("ALERT_SMTP_HOST"):
            recipients = tuple(a.strip() for a in (env.get("ALERT_SMTP_TO") or "").split(",") if a.strip())
            tls = (env.get("ALERT_SMTP_TLS") or "starttls").lower()
            if not recipients:
                raise ConfigError("ALERT_SMTP_HOST is set but ALERT_SMTP_TO names no recipient")
            if tls not in ("starttls", "ssl", "none"):
                raise ConfigError(f"ALERT_SMTP_TLS must be starttls, ssl or none, got {tls!r}")
            try:
                port = int(env.get("ALERT_SMTP_PORT") or (465 if tls == "ssl" else 587))
            except ValueError:
                raise ConfigError("ALERT_SMTP_PORT must be a port number") from None
            smtp = Smtp(
                host=env["ALERT_SMTP_HOST"],
                port=port,
                sender=env.get("ALERT_SMTP_FROM") or "migration-pipeline@localhost",
                recipients=recipients,
                user=env.get("ALERT_SMTP_USER") or None,
                password=env.get("ALERT_SMTP_PASSWORD") or None,
                tls=tls,
            )
        return cls(env.get("ALERT_WEBHOOK_URL") or None, smtp)


@dataclass(frozen=True)
class Delivery:
    channel: str  # "webhook https://hooks.slack.com/…" or "smtp mail.example.com:587"
    ok: bool
    detail: str = ""


def shown_url(url: str | None) -> str:
    """A webhook URL without its path or query (where Slack keeps the secret) or credentials."""
    if not url:
        return "none"
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/…"


def send(channels: Channels, subject: str, text: str) -> list[Delivery]:
    """Deliver ``subject`` and ``text`` (already free of secrets: see ``redact``) on every channel."""
    subject, text = redact(subject), redact(text)
    done = []
    if channels.webhook_url:
        done.append(_webhook(channels.webhook_url, subject, text))
    if channels.smtp:
        done.append(_mail(channels.smtp, subject, text))
    return done


def _webhook(url: str, subject: str, text: str) -> Delivery:
    channel = f"webhook {shown_url(url)}"
    body = orjson.dumps({"text": f"*{subject}*\n{text}"})
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return Delivery(channel, True, f"HTTP {response.status}")
    except urllib.error.HTTPError as err:
        return Delivery(channel, False, f"HTTP {err.code}")
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        return Delivery(channel, False, f"{type(err).__name__}: {reason}".replace(url, shown_url(url)))


def _mail(smtp: Smtp, subject: str, text: str) -> Delivery:
    channel = f"smtp {smtp.host}:{smtp.port}"
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = subject, smtp.sender, ", ".join(smtp.recipients)
    message.set_content(text)
    try:
        if smtp.tls == "ssl":
            client = smtplib.SMTP_SSL(
                smtp.host, smtp.port, timeout=TIMEOUT_S, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=TIMEOUT_S)
        with client:
            if smtp.tls == "starttls":
                client.starttls(context=ssl.create_default_context())
            if smtp.user:
                client.login(smtp.user, smtp.password or "")
            client.send_message(message)
        return Delivery(channel, True, f"to {', '.join(smtp.recipients)}")
    except (smtplib.SMTPException, OSError) as err:
        detail = f"{type(err).__name__}: {err}"
        if smtp.password:
            detail = detail.replace(smtp.password, "***")
        return Delivery(channel, False, detail)
