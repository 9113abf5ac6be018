"""Alert notifiers: generic webhook, Slack-compatible webhook, Alertmanager, SMTP e-mail.

Each notifier is called through a :class:`stalwart.resilience.Policy` named
``notifier:<name>`` (kind ``notifier``: a 10 s deadline per attempt, retries with
backoff and jitter on retryable errors, a circuit breaker), so a dead receiver
costs bounded time and never blocks the alert evaluator: the
:class:`Dispatcher` queues notices per notifier and delivers them in order on
its own task.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import smtplib
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any, Protocol

import httpx
from prometheus_client import Counter

from stalwart.observe import REGISTRY, AlertNotice, get_logger
from stalwart.resilience import Policy, RetryPolicy

__all__ = [
    "AlertmanagerNotifier",
    "Dispatcher",
    "Notifier",
    "SlackNotifier",
    "SmtpNotifier",
    "WebhookNotifier",
    "alertmanager_payload",
    "webhook_payload",
]

NOTIFICATIONS = Counter(
    "stalwart_alert_notifications_total",
    "Alert notifications by notifier and outcome (sent, failed)",
    ["notifier", "outcome"],
    registry=REGISTRY,
)
_log = get_logger("stalwart.alerts")


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat().replace("+00:00", "Z")


def webhook_payload(notice: AlertNotice, node: str = "") -> dict[str, Any]:
    """The generic webhook body: one alert, its severity, labels, value and status."""
    return {
        "version": "1",
        "status": notice.status,
        "alertname": notice.name,
        "severity": notice.severity,
        "labels": {**notice.labels, **({"node": node} if node else {})},
        "annotations": {"summary": notice.summary},
        "value": notice.value,
        "threshold": notice.threshold,
        "startsAt": _iso(notice.starts_at),
        "endsAt": _iso(notice.ends_at),
    }


def alertmanager_payload(notice: AlertNotice, node: str = "") -> list[dict[str, Any]]:
    """The body Alertmanager's ``POST /api/v2/alerts`` takes (a resolved alert has endsAt)."""
    alert: dict[str, Any] = {
        "labels": {**notice.labels, **({"node": node} if node else {})},
        "annotations": {
            "summary": notice.summary,
            "value": "" if notice.value is None else f"{notice.value:g}",
        },
        "startsAt": _iso(notice.starts_at),
    }
    if notice.ends_at is not None:
        alert["endsAt"] = _iso(notice.ends_at)
    return [alert]


def _text(notice: AlertNotice) -> str:
    group = " ".join(f"{k}={v}" for k, v in notice.labels.items() if k not in ("alertname",))
    value = "n/a" if notice.value is None else f"{notice.value:g}"
    head = f"[{notice.status.upper()}:{notice.severity}] {notice.name}"
    return f"{head} {group} value={value} threshold={notice.threshold:g}: {notice.summary}"


class Notifier(Protocol):
    """Delivers one notice; raises on failure (the dispatcher's policy retries)."""

    name: str

    async def send(self, notice: AlertNotice) -> None: ...


class _HttpNotifier:
    def __init__(self, url: str, *, name: str, timeout: float, node: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"notifier {name}: url must be http(s), got {url!r}")
        self.url, self.name, self.timeout, self.node = url, name, timeout, node

    def body(self, notice: AlertNotice) -> Any:
        raise NotImplementedError

    async def send(self, notice: AlertNotice) -> None:
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            response = await client.post(self.url, json=self.body(notice))
            response.raise_for_status()


class WebhookNotifier(_HttpNotifier):
    """POSTs :func:`webhook_payload` as JSON to ``url``."""

    def __init__(self, url: str, *, timeout: float = 10.0, node: str = "") -> None:
        super().__init__(url, name="webhook", timeout=timeout, node=node)

    def body(self, notice: AlertNotice) -> Any:
        return webhook_payload(notice, self.node)


class SlackNotifier(_HttpNotifier):
    """POSTs ``{"text": ...}`` (Slack, Mattermost and compatible incoming webhooks)."""

    def __init__(self, url: str, *, timeout: float = 10.0, node: str = "") -> None:
        super().__init__(url, name="slack", timeout=timeout, node=node)

    def body(self, notice: AlertNotice) -> Any:
        return {"text": _text(notice) + (f" (node {self.node})" if self.node else "")}


class AlertmanagerNotifier(_HttpNotifier):
    """POSTs :func:`alertmanager_payload` to an Alertmanager ``/api/v2/alerts`` URL."""

    def __init__(self, url: str, *, timeout: float = 10.0, node: str = "") -> None:
        super().__init__(url, name="alertmanager", timeout=timeout, node=node)

    def body(self, notice: AlertNotice) -> Any:
        return alertmanager_payload(notice, self.node)


class SmtpNotifier:
    """Sends one e-mail per notice over SMTP (STARTTLS and login when configured)."""

    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        to: Sequence[str],
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = 10.0,
    ) -> None:
        if not to:
            raise ValueError("email notifier: at least one recipient")
        self.host, self.port, self.sender, self.to = host, port, sender, list(to)
        self.username, self.password, self.starttls, self.timeout = (
            username, password, starttls, timeout,
        )  # fmt: skip

    def _send_sync(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(message)

    async def send(self, notice: AlertNotice) -> None:
        message = EmailMessage()
        message["Subject"] = _text(notice)[:200]
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        message.set_content(_text(notice) + "\n\n" + str(webhook_payload(notice)))
        await asyncio.to_thread(self._send_sync, message)


class Dispatcher:
    """Queues notices per notifier and delivers them in order, each behind a Policy."""

    def __init__(
        self, notifiers: Sequence[Notifier], *, timeout: float = 10.0, attempts: int = 3
    ) -> None:
        self.notifiers = list(notifiers)
        self._timeout = timeout
        self._attempts = attempts
        self._queues: dict[str, asyncio.Queue[AlertNotice]] = {}
        self._workers: list[asyncio.Task[None]] = []
        self.delivered: list[tuple[str, AlertNotice]] = []

    def start(self) -> None:
        for notifier in self.notifiers:
            q: asyncio.Queue[AlertNotice] = asyncio.Queue(maxsize=1000)
            self._queues[notifier.name] = q
            self._workers.append(asyncio.create_task(self._deliver(notifier, q)))

    def submit(self, notice: AlertNotice) -> None:
        """Queue ``notice`` for every notifier (dropped, counted, if one is 1000 behind)."""
        for name, q in self._queues.items():
            try:
                q.put_nowait(notice)
            except asyncio.QueueFull:
                NOTIFICATIONS.labels(name, "dropped").inc()

    async def send_now(self, notice: AlertNotice) -> dict[str, str]:
        """Deliver ``notice`` to every notifier at once (``alerts test``); outcome per notifier."""
        results: dict[str, str] = {}
        for notifier in self.notifiers:
            try:
                await self._policy(notifier).acall(notifier.send, notice)
                NOTIFICATIONS.labels(notifier.name, "sent").inc()
                results[notifier.name] = "sent"
            except Exception as exc:
                NOTIFICATIONS.labels(notifier.name, "failed").inc()
                results[notifier.name] = f"failed: {type(exc).__name__}: {exc}"[:300]
        return results

    def _policy(self, notifier: Notifier) -> Policy:
        return Policy(
            f"notifier:{notifier.name}",
            timeout=self._timeout,
            retry=RetryPolicy(max_attempts=self._attempts),
        )

    async def _deliver(self, notifier: Notifier, q: asyncio.Queue[AlertNotice]) -> None:
        policy = self._policy(notifier)
        while True:
            # no-deadline: a notifier worker waits for alerts for as long as the node runs
            notice = await q.get()
            try:
                await policy.acall(notifier.send, notice)
            except Exception as exc:
                q.task_done()
                NOTIFICATIONS.labels(notifier.name, "failed").inc()
                _log.error(
                    "alert_notification_failed",
                    notifier=notifier.name,
                    alertname=notice.name,
                    error_class=type(exc).__name__,
                    error=str(exc)[:300],
                )
                continue
            NOTIFICATIONS.labels(notifier.name, "sent").inc()
            self.delivered.append((notifier.name, notice))
            q.task_done()

    async def close(self, timeout: float = 5.0) -> None:
        """Give queued notices ``timeout`` seconds to go out, then stop the workers."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(q.join() for q in self._queues.values()))
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
