"""Optional OTLP export of metrics and logs (OTLP/HTTP, JSON encoding).

When ``otlp_endpoint`` is set (``STALWART_OTLP_ENDPOINT``, else the standard
``OTEL_EXPORTER_OTLP_ENDPOINT``; e.g. ``http://collector:4318``), the node POSTs
every ``otlp_interval_s`` seconds its metrics to ``/v1/metrics`` (cumulative sums,
gauges and histograms, as Prometheus exposes them) and the log lines since the
last export to ``/v1/logs``. Each POST goes through a resilience :class:`Policy`
(deadline, retries, breaker); a failed export is counted and logged, and the lines
it carried are dropped (the log store still has them).

The OTLP exporter variables of the OpenTelemetry specification apply here as they do to
the SDK's exporters (:func:`otel_settings`), each with its per-signal form
(``_METRICS_`` / ``_LOGS_``) taking precedence: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the
base, ``/v1/metrics`` and ``/v1/logs`` appended) and the per-signal endpoints (used as
they are), ``_HEADERS`` (sent with every POST: auth), ``_TIMEOUT`` (ms),
``_COMPRESSION`` (``gzip``), ``_CERTIFICATE`` (the CA to trust) and
``_CLIENT_CERTIFICATE`` / ``_CLIENT_KEY`` (mutual TLS), ``_PROTOCOL`` (``http/json``
and ``http/protobuf`` are served over HTTP, in JSON; ``grpc`` is refused with a
warning and that signal is not sent); ``OTEL_METRIC_EXPORT_INTERVAL`` (ms);
``OTEL_METRICS_EXPORTER`` / ``OTEL_LOGS_EXPORTER`` (``none`` turns that signal off);
``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` (the resource);
``OTEL_SDK_DISABLED=true`` exports nothing.

Model latency is exported under OpenTelemetry's GenAI name
``gen_ai.client.operation.duration`` and tokens per call as
``gen_ai.client.token.usage``, with ``gen_ai.request.model``,
``gen_ai.provider.name``, ``gen_ai.operation.name`` and ``gen_ai.token.type``
attributes.

Traces are not sent from here: the OpenTelemetry SDK exports them from every
process (:mod:`stalwart.observe` tracing). Metrics and logs stay on this exporter
because they live in ``prometheus_client`` registries (the node's, plus what agent
processes ship to it), not in SDK instruments, and the SDK's metric exporter sends
only SDK instruments. Counters and gauges could reach them through observable
instruments read at export time, but the API has no observable histogram, so the
histograms (both GenAI metrics among them) would be recorded twice, on the call
path. Measured (``bench/otlp_metrics.py``, ``bench/results/otlp_metrics.json``, this
thread's CPU on a 2-core machine under load): one SDK histogram ``record`` costs
7.9 us beside 1.7 us for the Prometheus ``observe`` it would duplicate, so a model
call (3 histogram observations) would pay ~19 us more; what the SDK saves is at
export, 2.4 ms instead of 3.8 ms (medians of 200) to encode a busy node's 192
series, once per ``otlp_interval_s`` (15 s). The SDK's protobuf body is smaller:
20 kB against 51 kB of JSON, both uncompressed.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import functools
import gzip
import json
import os
import ssl
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter

from stalwart.observe import REGISTRY, add_log_sink, get_logger
from stalwart.resilience import Policy, RetryPolicy

__all__ = ["OtelSettings", "OtlpExporter", "logs_request", "metrics_request", "otel_settings"]

EXPORTS = Counter(
    "stalwart_otlp_exports_total", "OTLP export requests by signal and outcome",
    ["signal", "outcome"], registry=REGISTRY,
)  # fmt: skip
_log = get_logger("stalwart.otlp")

_GENAI_NAMES = {
    "stalwart_model_request_duration_seconds": "gen_ai.client.operation.duration",
    "stalwart_model_call_tokens": "gen_ai.client.token.usage",
}
_GENAI_UNITS = {"gen_ai.client.operation.duration": "s", "gen_ai.client.token.usage": "{token}"}
_GENAI_ATTRS = {
    "model": "gen_ai.request.model",
    "provider": "gen_ai.provider.name",
    "operation": "gen_ai.operation.name",
    "type": "gen_ai.token.type",
}
_SEVERITY = {"debug": 5, "info": 9, "warning": 13, "error": 17, "critical": 21}


def _attrs(labels: dict[str, str], rename: bool = False) -> list[dict[str, Any]]:
    return [
        {"key": _GENAI_ATTRS.get(k, k) if rename else k, "value": {"stringValue": str(v)}}
        for k, v in sorted(labels.items())
    ]


def _headers(value: str, *, lower: bool = True) -> dict[str, str]:
    """``k1=v1,k2=v2`` (values URL-encoded), the format of the OTLP exporter variables
    and of ``OTEL_RESOURCE_ATTRIBUTES``; header names lower-cased."""
    out: dict[str, str] = {}
    for item in value.split(","):
        key, sep, val = item.partition("=")
        if sep and key.strip():
            name = urllib.parse.unquote(key.strip())
            out[name.lower() if lower else name] = urllib.parse.unquote(val.strip())
    return out


_SIGNALS = ("metrics", "logs")
_PATHS = {"metrics": "/v1/metrics", "logs": "/v1/logs"}


@dataclasses.dataclass(frozen=True, slots=True)
class OtelSettings:
    """What the ``OTEL_*`` variables say for this exporter (per signal: ``metrics``, ``logs``).

    ``urls`` maps a signal to its full URL, or ``None`` when no endpoint names it (or its
    exporter is ``none``, or its protocol is one this exporter does not speak, said in
    ``refused``); ``timeouts`` in seconds (``None``: the caller's default); ``interval``
    the metric export interval in seconds (``None``: the caller's).
    """

    disabled: bool = False
    service: str = "stalwart"
    resource: dict[str, str] = dataclasses.field(default_factory=dict)
    urls: dict[str, str | None] = dataclasses.field(default_factory=dict)
    headers: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    timeouts: dict[str, float | None] = dataclasses.field(default_factory=dict)
    gzip: dict[str, bool] = dataclasses.field(default_factory=dict)
    ca_file: dict[str, str | None] = dataclasses.field(default_factory=dict)
    client_cert: dict[str, tuple[str, str | None] | None] = dataclasses.field(default_factory=dict)
    refused: dict[str, str] = dataclasses.field(default_factory=dict)
    interval: float | None = None


def _per_signal(env: Mapping[str, str], signal: str, name: str) -> str:
    """``OTEL_EXPORTER_OTLP_{SIGNAL}_{name}``, else ``OTEL_EXPORTER_OTLP_{name}``, else ''."""
    return (
        env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_{name}")
        or env.get(f"OTEL_EXPORTER_OTLP_{name}")
        or ""
    ).strip()


def _millis(value: str, name: str) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value) / 1000.0
    except ValueError:
        raise ValueError(f"{name} must be a number of milliseconds, got {value!r}") from None
    if seconds <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return seconds


def otel_settings(env: Mapping[str, str], endpoint: str | None = None) -> OtelSettings:
    """The ``OTEL_*`` variables in ``env`` (see the module docstring); ``endpoint`` is the
    base URL stalwart was given (``otlp_endpoint``), used where ``env`` names none."""
    base = (endpoint or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").strip().rstrip("/")
    common = _headers(env.get("OTEL_EXPORTER_OTLP_HEADERS", ""))
    resource = _headers(env.get("OTEL_RESOURCE_ATTRIBUTES", ""), lower=False)
    out = OtelSettings(
        disabled=env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true",
        service=env.get("OTEL_SERVICE_NAME") or resource.pop("service.name", "") or "stalwart",
        resource=resource,
        interval=_millis(env.get("OTEL_METRIC_EXPORT_INTERVAL", ""), "OTEL_METRIC_EXPORT_INTERVAL"),
    )
    for signal in _SIGNALS:
        url = env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT", "").strip() or (
            base + _PATHS[signal] if base else ""
        )
        protocol = _per_signal(env, signal, "PROTOCOL") or "http/protobuf"
        if env.get(f"OTEL_{signal.upper()}_EXPORTER", "").strip().lower() == "none":
            url = ""
        elif url and protocol not in ("http/protobuf", "http/json"):
            out.refused[signal] = f"protocol {protocol!r} (this exporter speaks OTLP/HTTP)"
            url = ""
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"OTLP {signal} endpoint must be http(s), got {url!r}")
        out.urls[signal] = url or None
        out.headers[signal] = common | _headers(
            env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_HEADERS", "")
        )
        name = f"OTEL_EXPORTER_OTLP_[{signal.upper()}_]TIMEOUT"
        out.timeouts[signal] = _millis(_per_signal(env, signal, "TIMEOUT"), name)
        out.gzip[signal] = _per_signal(env, signal, "COMPRESSION").lower() == "gzip"
        out.ca_file[signal] = _per_signal(env, signal, "CERTIFICATE") or None
        cert = _per_signal(env, signal, "CLIENT_CERTIFICATE")
        key = _per_signal(env, signal, "CLIENT_KEY") or None
        out.client_cert[signal] = (cert, key) if cert else None
    return out


def _resource(
    node: str, service: str = "stalwart", extra: Mapping[str, str] | None = None
) -> dict[str, Any]:
    return {
        "attributes": _attrs(
            {**(extra or {}), "service.name": service, "service.instance.id": node}
        ),
    }


def metrics_request(
    registry: CollectorRegistry,
    node: str,
    *,
    start_ns: int,
    now_ns: int | None = None,
    service: str = "stalwart",
    resource: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An ``ExportMetricsServiceRequest`` (JSON form) of every metric in ``registry``."""
    now = str(now_ns if now_ns is not None else time.time_ns())
    start = str(start_ns)
    metrics: list[dict[str, Any]] = []
    for family in registry.collect():
        name = _GENAI_NAMES.get(family.name, family.name)
        rename = family.name in _GENAI_NAMES
        base = {"name": name, "description": family.documentation, "unit": family.unit or ""}
        if family.type == "counter":
            points = [
                {"attributes": _attrs(s.labels), "startTimeUnixNano": start,
                 "timeUnixNano": now, "asDouble": float(s.value)}
                for s in family.samples if s.name == family.name + "_total"
            ]  # fmt: skip
            if points:
                total = {"dataPoints": points, "aggregationTemporality": 2, "isMonotonic": True}
                metrics.append({**base, "sum": total})
        elif family.type == "gauge":
            points = [
                {"attributes": _attrs(s.labels), "timeUnixNano": now, "asDouble": float(s.value)}
                for s in family.samples
                if s.name == family.name
            ]
            if points:
                metrics.append({**base, "gauge": {"dataPoints": points}})
        elif family.type == "histogram":
            points = _histogram_points(family, start, now, rename)
            if points:
                if rename:
                    base["unit"] = _GENAI_UNITS[name]
                metrics.append(
                    {**base, "histogram": {"dataPoints": points, "aggregationTemporality": 2}}
                )
    return {
        "resourceMetrics": [
            {
                "resource": _resource(node, service, resource),
                "scopeMetrics": [{"scope": {"name": "stalwart"}, "metrics": metrics}],
            }
        ]
    }


def _histogram_points(family: Any, start: str, now: str, rename: bool) -> list[dict[str, Any]]:
    groups: dict[tuple[tuple[str, str], ...], dict[str, Any]] = collections.defaultdict(
        lambda: {"b": {}, "sum": 0.0, "count": 0.0}
    )
    for s in family.samples:
        labels = {k: v for k, v in s.labels.items() if k != "le"}
        g = groups[tuple(sorted(labels.items()))]
        if s.name == family.name + "_bucket":
            g["b"][s.labels["le"]] = s.value
        elif s.name == family.name + "_sum":
            g["sum"] = s.value
        elif s.name == family.name + "_count":
            g["count"] = s.value
    points = []
    for key, g in groups.items():
        les = sorted(g["b"], key=float)
        cumulative = [g["b"][le] for le in les]
        counts = [c - (cumulative[i - 1] if i else 0.0) for i, c in enumerate(cumulative)]
        bounds = [float(le) for le in les if le != "+Inf"]
        points.append(
            {
                "attributes": _attrs(dict(key), rename),
                "startTimeUnixNano": start,
                "timeUnixNano": now,
                "count": str(int(g["count"])),
                "sum": float(g["sum"]),
                "bucketCounts": [str(int(c)) for c in counts],
                "explicitBounds": bounds,
            }
        )
    return points


def logs_request(
    records: list[tuple[dict[str, Any], str]],
    node: str,
    service: str = "stalwart",
    resource: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An ``ExportLogsServiceRequest`` (JSON form): one log record per line."""
    out = []
    for record, line in records:
        level = str(record.get("level") or "info")
        attributes = {
            k: str(record[k])
            for k in ("event", "logger", "node", "agent_id", "task_id", "step", "trace_id",
                      "error_class")
            if record.get(k) is not None
        }  # fmt: skip
        out.append(
            {
                "timeUnixNano": str(int(_ts(record.get("ts")) * 1e9)),
                "severityNumber": _SEVERITY.get(level, 9),
                "severityText": level.upper(),
                "body": {"stringValue": line},
                "attributes": _attrs(attributes),
            }
        )
    scope = {"scope": {"name": "stalwart"}, "logRecords": out}
    return {
        "resourceLogs": [{"resource": _resource(node, service, resource), "scopeLogs": [scope]}]
    }


def _ts(value: Any) -> float:
    if isinstance(value, str):
        try:
            return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return time.time()


class OtlpExporter:
    """Exports metrics and logs to an OTLP/HTTP endpoint every ``interval`` seconds.

    ``endpoint`` is the base URL (``/v1/metrics`` and ``/v1/logs`` appended) unless the
    ``OTEL_*`` variables of ``env`` (default: the process environment) say otherwise;
    they also give the headers, timeouts, compression, TLS files, the interval and the
    resource (see the module docstring).
    """

    def __init__(
        self,
        endpoint: str | None,
        node: str,
        *,
        interval: float = 15.0,
        timeout: float = 10.0,
        registry: CollectorRegistry = REGISTRY,
        max_lines: int = 10_000,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if endpoint and not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"otlp endpoint must be http(s), got {endpoint!r}")
        self.settings = otel_settings(os.environ if env is None else env, endpoint)
        self.disabled = self.settings.disabled
        self.service = self.settings.service
        self.urls = self.settings.urls
        self.node = node
        self.interval = self.settings.interval or interval
        self.registry = registry
        self._lines: collections.deque[tuple[dict[str, Any], str]] = collections.deque(
            maxlen=max_lines
        )
        self._timeouts = {s: self.settings.timeouts[s] or timeout for s in _SIGNALS}
        self._policy = Policy(
            "otlp", timeout=max(self._timeouts.values()), retry=RetryPolicy(max_attempts=2)
        )
        self._start_ns = time.time_ns()
        self._remove: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._clients = {
            signal: httpx.AsyncClient(timeout=self._timeouts[signal], verify=self._tls(signal))
            for signal in _SIGNALS
        }

    def _tls(self, signal: str) -> ssl.SSLContext | bool:
        """The CA and client certificate the variables give this signal (files read now:
        a missing one is an error at start-up, not at the first export)."""
        ca, cert = self.settings.ca_file[signal], self.settings.client_cert[signal]
        if ca is None and cert is None:
            return True
        context = ssl.create_default_context(cafile=ca)
        if cert is not None:
            context.load_cert_chain(cert[0], cert[1])
        return context

    def _sink(self, record: dict[str, Any], line: str) -> None:
        self._lines.append((record, line))

    def start(self) -> None:
        if self.disabled:  # OTEL_SDK_DISABLED: nothing is collected, nothing sent
            return
        for signal, why in self.settings.refused.items():
            _log.warning("otlp_signal_refused", signal=signal, reason=why)
        if self.urls["logs"] is not None:
            self._remove = add_log_sink(self._sink)
        self._task = asyncio.create_task(self._run(), name="stalwart-otlp")

    async def _post(self, signal: str, body: dict[str, Any]) -> None:
        url = self.urls[signal]
        assert url is not None
        headers = {**self.settings.headers[signal], "content-type": "application/json"}
        content = json.dumps(body, separators=(",", ":")).encode()
        if self.settings.gzip[signal]:
            content = gzip.compress(content)
            headers["content-encoding"] = "gzip"
        response = await self._clients[signal].post(
            url, content=content, headers=headers, timeout=self._timeouts[signal]
        )
        response.raise_for_status()

    async def export(self) -> None:
        """Send one metrics request and the pending log lines now."""
        if self.disabled:
            return
        resource = self.settings.resource
        metrics = None
        if self.urls["metrics"] is not None:
            metrics = await asyncio.to_thread(
                functools.partial(
                    metrics_request,
                    self.registry,
                    self.node,
                    start_ns=self._start_ns,
                    service=self.service,
                    resource=resource,
                )
            )
        lines = list(self._lines)
        self._lines.clear()
        logs = logs_request(lines, self.node, self.service, resource) if lines else None
        for signal, body in (("metrics", metrics), ("logs", logs)):
            if body is None:
                continue
            try:
                await self._policy.acall(self._post, signal, body)
                EXPORTS.labels(signal, "sent").inc()
            except Exception as exc:
                EXPORTS.labels(signal, "failed").inc()
                _log.warning("otlp_export_failed", signal=signal, error_class=type(exc).__name__)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.export()

    async def stop(self) -> None:
        """Stop the loop, send what is pending once more (bounded), close the clients."""
        if self._remove is not None:
            self._remove()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            async with asyncio.timeout(5.0):
                await self.export()
        except TimeoutError:
            pass
        for client in self._clients.values():
            await client.aclose()
