"""What ``stalwart run`` shows a person at a terminal: its log format and a start-up banner.

On a terminal the log lines are readable (structlog's console renderer) and, once the
node has started, one short block says where the API, the dashboard and the metrics
listen, which store and agents run, and whether the API needs a token. Off a terminal
(a pipe, a container's log driver, systemd's journal) lines stay JSON and no banner is
printed: the ``http_listening`` and ``node_started`` events carry the same facts.
``--log-format`` (``$STALWART_LOG_FORMAT``) overrides the choice.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Literal, TextIO

import stalwart
from stalwart.db import redact
from stalwart.errors import ConfigError
from stalwart.observe import Event
from stalwart.server._service import ObservabilityService

__all__ = ["LOG_FORMATS", "Banner", "log_format"]

LOG_FORMATS = ("auto", "console", "json")


def log_format(flag: str | None, stream: TextIO) -> Literal["console", "json"]:
    """The log format ``stalwart run`` writes: ``flag``, else ``$STALWART_LOG_FORMAT``,
    else ``auto``, which is ``console`` when ``stream`` is a terminal and ``json`` if not."""
    chosen = flag or os.environ.get("STALWART_LOG_FORMAT") or "auto"
    if chosen not in LOG_FORMATS:
        raise ConfigError(f"STALWART_LOG_FORMAT={chosen!r} is not one of {', '.join(LOG_FORMATS)}")
    if chosen == "auto":
        return "console" if stream.isatty() else "json"
    return "console" if chosen == "console" else "json"


@dataclasses.dataclass(frozen=True, slots=True)
class Banner:
    """The facts of the start-up banner, gathered before the node runs; ``show`` prints
    it once the node has started (the HTTP port, maybe picked by the system, is known)."""

    app: str
    agents: Sequence[str]
    store: str | None
    http: ObservabilityService | None
    sim_url: str | None
    stream: TextIO

    def render(self, node_id: str) -> str:
        rows: list[tuple[str, str]] = []
        if self.http is None:
            rows.append(("HTTP API", "off (--no-http): no dashboard, API or /metrics"))
        else:
            url = self.http.url
            settings = self.http.settings
            rows.append(("dashboard", f"{url}/"))
            rows.append(("API", f"{url}/v1  (OpenAPI: {url}/openapi.json)"))
            public = "/metrics" in settings.public_paths
            rows.append(("metrics", f"{url}/metrics" + ("" if public else "  (token needed)")))
            rows.append(("API token", _token_status(settings.api_token)))
        rows.append(("store", redact(self.store) if self.store else "none (a bare supervisor)"))
        rows.append(("agents", ", ".join(self.agents) or "(none)"))
        if self.sim_url:
            rows.append(("simulator", self.sim_url))
        width = max(len(k) for k, _ in rows)
        head = f"stalwart {stalwart.__version__} is running {self.app} on node {node_id}"
        body = "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)
        return f"{head}\n{body}\n  Ctrl-C stops the node.\n"

    def show(self, event: Event) -> None:
        """An EventBus subscriber: print the banner at ``node_started``."""
        if event.name == "node_started":
            self.stream.write("\n" + self.render(str(event.get("node", ""))) + "\n")
            self.stream.flush()


def _token_status(token: str | None) -> str:
    if not token:
        return "none set: reads are open, mutations answer 403 (loopback only)"
    if token.startswith("secret://"):
        return f"required (from {token})"
    return "required (set)"
