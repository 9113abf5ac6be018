"""The observability service a node runs: HTTP server, log store, process metrics, alerts.

``Node(root, services=[ObservabilityService(settings)])`` (``stalwart run`` does
this) starts it before the supervision tree, so ``/livez`` and ``/readyz``
answer during startup, and stops it after the tree. The listening socket is
bound in ``start`` (a port in use makes the node exit 2 at once) and handed to
uvicorn, so the server accepts connections from the moment ``start`` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Iterator, Sequence

import uvicorn

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.errors import ConfigError, StartError
from stalwart.guard import SecretResolver
from stalwart.observe import (
    AlertEvaluator,
    AlertNotice,
    AlertRule,
    ProcessCollector,
    configure_tracing,
    default_rules,
    load_rules,
    shutdown_tracing,
)
from stalwart.server._app import AppState, build_app
from stalwart.server._auth import ApiToken
from stalwart.server._logstore import LogStore
from stalwart.server._notify import (
    AlertmanagerNotifier,
    Dispatcher,
    Notifier,
    SlackNotifier,
    SmtpNotifier,
    WebhookNotifier,
)
from stalwart.server._otlp import OtlpExporter
from stalwart.server._settings import ServerSettings
from stalwart.server._systemd import SystemdNotifier
from stalwart.server._views import NodeLike, agent_processes

__all__ = ["ObservabilityService", "notifiers_from_settings"]


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handlers: the node owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def notifiers_from_settings(settings: ServerSettings, node: str = "") -> list[Notifier]:
    """The notifiers ``settings`` configures (webhook, Slack, Alertmanager, e-mail)."""
    out: list[Notifier] = []
    t = settings.notify_timeout_s
    if settings.webhook_url:
        out.append(WebhookNotifier(settings.webhook_url, timeout=t, node=node))
    if settings.slack_url:
        out.append(SlackNotifier(settings.slack_url, timeout=t, node=node))
    if settings.alertmanager_url:
        out.append(AlertmanagerNotifier(settings.alertmanager_url, timeout=t, node=node))
    if settings.smtp_host and settings.smtp_to:
        out.append(
            SmtpNotifier(
                settings.smtp_host,
                settings.smtp_port,
                settings.smtp_from,
                settings.smtp_to,
                username=settings.smtp_user,
                password=settings.smtp_password,
                starttls=settings.smtp_starttls,
                timeout=t,
            )
        )
    return out


class ObservabilityService:
    """Serves the node's HTTP API and runs its log store and alert evaluator.

    ``rules`` default to :func:`~stalwart.observe.default_rules` changed by the
    ``alert_rules`` file when set; ``notifiers``
    are added to those ``settings`` configure. ``clock`` drives the evaluator and
    the API's rate limiter. ``secrets`` resolves an ``api_token`` given as
    ``secret://name`` (default: the provider ``STALWART_SECRETS`` names); such a
    token is resolved once in ``start``, so a missing secret stops the node at
    once, naming it. After ``start``, ``port`` is the bound port and ``url`` the
    base URL.
    """

    def __init__(
        self,
        settings: ServerSettings | None = None,
        *,
        rules: Sequence[AlertRule] | None = None,
        notifiers: Sequence[Notifier] = (),
        clock: Clock = SYSTEM_CLOCK,
        secrets: SecretResolver | None = None,
    ) -> None:
        self.settings = settings or ServerSettings()
        self.secrets = secrets
        if rules is None:
            path = self.settings.alert_rules
            rules = load_rules(path) if path else default_rules()
        self.rules = list(rules)
        self.extra_notifiers = list(notifiers)
        self.clock = clock
        self.port = 0
        self.store: LogStore | None = None
        self.evaluator: AlertEvaluator | None = None
        self.dispatcher: Dispatcher | None = None
        self.state: AppState | None = None
        self._node: NodeLike | None = None
        self._collector: ProcessCollector | None = None
        self._server: _Uvicorn | None = None
        self._serve_task: asyncio.Task[None] | None = None
        self._eval_task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None
        self.systemd = SystemdNotifier()
        self.otlp: OtlpExporter | None = None
        self.tracing = False

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    async def start(self, node: NodeLike) -> None:
        s = self.settings
        self._node = node
        token = ApiToken(s.api_token, self.secrets)
        try:  # before the port opens: a token that cannot be checked serves nothing
            await asyncio.to_thread(token.check_now)
        except ConfigError as exc:  # logged as api_token_unavailable, and node_start_failed
            raise StartError(f"the HTTP API cannot start: {exc}") from None
        self.secrets = token.resolver  # one resolver (and cache) for the checks and requests
        node.readiness.timeout = s.health_timeout_s
        # Made as a TCP socket by name (proto IPPROTO_TCP, not 0): asyncio turns Nagle's
        # algorithm off (TCP_NODELAY) on each connection it accepts only when the socket says
        # it is TCP. Without it, a client that kept its connection open waited for every
        # response about 40 ms, the body held back behind the headers until the client's
        # delayed ACK (44 ms a request against 2-4 ms, 2026-12-06). Set on the listener too.
        family = socket.AF_INET6 if ":" in s.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((s.host, s.port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot listen on {s.host}:{s.port}: {exc.strerror}") from exc
        self.port = sock.getsockname()[1]
        self._sock = sock
        try:
            if s.log_db:
                store = LogStore(s.log_db, retention_s=s.log_retention_s, max_rows=s.log_max_rows)
                self.store = store
                await asyncio.to_thread(store.open)  # connects and migrates: off the loop
            self._start_parts(node, sock)
        except Exception as exc:  # release what was started; the node exits 2
            await self.stop()
            raise StartError(f"the observability service could not start: {exc}") from exc

    def _start_parts(self, node: NodeLike, sock: socket.socket) -> None:
        s = self.settings
        if self.store is not None:
            self.store.start(attach=True)
        self._collector = ProcessCollector(lambda: agent_processes(node.runtime))
        self._collector.register()
        self.dispatcher = Dispatcher(
            [*notifiers_from_settings(s, node.id), *self.extra_notifiers],
            timeout=s.notify_timeout_s,
        )
        self.dispatcher.start()
        self.evaluator = AlertEvaluator(
            self.rules,
            clock=self.clock,
            interval=s.alert_interval_s,
            notify=self._on_notice,
            before=self._refresh_readiness,
        )
        self._eval_task = asyncio.create_task(self._evaluate(), name="stalwart-alerts")
        self.state = AppState(
            node,
            s,
            evaluator=self.evaluator,
            dispatcher=self.dispatcher,
            log_db=s.log_db,
            secrets=self.secrets,
            clock=self.clock,
        )
        config = uvicorn.Config(
            build_app(self.state),
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            timeout_keep_alive=5,
        )
        self._server = _Uvicorn(config)
        self._serve_task = asyncio.create_task(
            self._server.serve(sockets=[sock]), name="stalwart-http"
        )
        node.events.emit("http_listening", node=node.id, host=s.host, port=self.port)
        self.systemd.start(lambda: node.ready)
        # the OTEL_* environment turns tracing on: an HTTP traceparent then reaches the agents
        self.tracing = configure_tracing(instance=node.id)
        # metrics and logs over OTLP: otlp_endpoint, else the OTEL_* endpoint variables
        named = ("", "_METRICS", "_LOGS")
        if s.otlp_endpoint or any(os.environ.get(f"OTEL_EXPORTER_OTLP{n}_ENDPOINT") for n in named):
            self.otlp = OtlpExporter(
                s.otlp_endpoint, node.id, interval=s.otlp_interval_s, timeout=s.notify_timeout_s
            )
            self.otlp.start()

    async def _refresh_readiness(self) -> None:
        if self._node is not None:
            await self._node.readiness.run()

    async def _evaluate(self) -> None:
        assert self.evaluator is not None
        try:
            await self.evaluator.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never silently: the alerting loop died
            if self._node is not None:
                self._node.events.emit("alert_evaluator_failed", error=repr(exc))
            raise

    def _on_notice(self, notice: AlertNotice) -> None:
        if self._node is not None:
            self._node.events.emit(
                f"alert_{notice.status}",
                alertname=notice.name,
                severity=notice.severity,
                labels=notice.labels,
                value=notice.value,
                threshold=notice.threshold,
            )
        if self.dispatcher is not None:
            self.dispatcher.submit(notice)

    async def stop(self) -> None:
        await self.systemd.stop()
        if self.state is not None:
            self.state.closing.set()
        if self._eval_task is not None:
            self._eval_task.cancel()
            await asyncio.gather(self._eval_task, return_exceptions=True)
        if self._server is not None and self._serve_task is not None:
            self._server.should_exit = True
            done, _ = await asyncio.wait([self._serve_task], timeout=5.0)
            if not done:
                self._serve_task.cancel()
                await asyncio.gather(self._serve_task, return_exceptions=True)
        elif self._sock is not None:
            self._sock.close()
        if self.state is not None:
            await self.state.close()
        if self.dispatcher is not None:
            await self.dispatcher.close(timeout=3.0)
        if self.otlp is not None:
            await self.otlp.stop()
        if self.tracing:
            with contextlib.suppress(TimeoutError):  # spans not out in 5 s are lost
                async with asyncio.timeout(5.0):
                    await asyncio.to_thread(shutdown_tracing)
        if self._collector is not None:
            self._collector.unregister()
        if self.store is not None:
            await asyncio.to_thread(self.store.close, 5.0)
