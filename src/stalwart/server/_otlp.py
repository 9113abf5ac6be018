"""Optional OTLP export of metrics and logs (OTLP/HTTP, JSON encoding).

When ``otlp_endpoint`` is set (``STALWART_OTLP_ENDPOINT``, else the standard
``OTEL_EXPORTER_OTLP_ENDPOINT``; e.g. ``http://collector:4318``), the node POSTs
every ``otlp_interval_s`` seconds its metrics to ``/v1/metrics`` (cumulative sums,
gauges and histograms, as Prometheus exposes them) and the log lines since the
last export to ``/v1/logs``. Each POST goes through a resilience :class:`Policy`
(deadline, retries, breaker); a failed export is counted and logged, and the lines
it carried are dropped (the log store still has them).

The standard variables apply here too (:func:`otel_settings`):
``OTEL_EXPORTER_OTLP_HEADERS`` (plus ``_METRICS_HEADERS`` / ``_LOGS_HEADERS``) are
sent with every POST (auth), ``OTEL_SERVICE_NAME`` names the resource, and
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
import datetime
import functools
import os
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter

from stalwart.observe import REGISTRY, add_log_sink, get_logger
from stalwart.resilience import Policy, RetryPolicy

__all__ = ["OtlpExporter", "logs_request", "metrics_request", "otel_settings"]

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


def _headers(value: str) -> dict[str, str]:
    """``k1=v1,k2=v2`` (values URL-encoded), the OTLP exporter variables' format."""
    out: dict[str, str] = {}
    for item in value.split(","):
        key, sep, val = item.partition("=")
        if sep and key.strip():
            out[urllib.parse.unquote(key.strip()).lower()] = urllib.parse.unquote(val.strip())
    return out


def otel_settings(env: Mapping[str, str]) -> tuple[bool, dict[str, dict[str, str]], str]:
    """From the ``OTEL_*`` variables: (disabled, headers per signal, service name)."""
    disabled = env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    common = _headers(env.get("OTEL_EXPORTER_OTLP_HEADERS", ""))
    headers = {
        signal: common | _headers(env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_HEADERS", ""))
        for signal in ("metrics", "logs")
    }
    return disabled, headers, env.get("OTEL_SERVICE_NAME") or "stalwart"


def _resource(node: str, service: str = "stalwart") -> dict[str, Any]:
    return {
        "attributes": _attrs({"service.name": service, "service.instance.id": node}),
    }


def metrics_request(
    registry: CollectorRegistry,
    node: str,
    *,
    start_ns: int,
    now_ns: int | None = None,
    service: str = "stalwart",
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
                "resource": _resource(node, service),
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
    records: list[tuple[dict[str, Any], str]], node: str, service: str = "stalwart"
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
    return {"resourceLogs": [{"resource": _resource(node, service), "scopeLogs": [scope]}]}


def _ts(value: Any) -> float:
    if isinstance(value, str):
        try:
            return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return time.time()


class OtlpExporter:
    """Exports metrics and logs to an OTLP/HTTP endpoint every ``interval`` seconds."""

    def __init__(
        self,
        endpoint: str,
        node: str,
        *,
        interval: float = 15.0,
        timeout: float = 10.0,
        registry: CollectorRegistry = REGISTRY,
        max_lines: int = 10_000,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``env`` (default: the process environment) supplies the ``OTEL_*`` settings."""
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"otlp endpoint must be http(s), got {endpoint!r}")
        self.endpoint = endpoint.rstrip("/")
        self.node = node
        self.interval = interval
        self.registry = registry
        self._lines: collections.deque[tuple[dict[str, Any], str]] = collections.deque(
            maxlen=max_lines
        )
        self._policy = Policy("otlp", timeout=timeout, retry=RetryPolicy(max_attempts=2))
        self._start_ns = time.time_ns()
        self._remove: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.disabled, self._headers, self.service = otel_settings(
            os.environ if env is None else env
        )
        self._client = httpx.AsyncClient(timeout=timeout)

    def _sink(self, record: dict[str, Any], line: str) -> None:
        self._lines.append((record, line))

    def start(self) -> None:
        if self.disabled:  # OTEL_SDK_DISABLED: nothing is collected, nothing sent
            return
        self._remove = add_log_sink(self._sink)
        self._task = asyncio.create_task(self._run(), name="stalwart-otlp")

    async def _post(self, path: str, body: dict[str, Any]) -> None:
        headers = self._headers["metrics" if path == "/v1/metrics" else "logs"]
        response = await self._client.post(self.endpoint + path, json=body, headers=headers)
        response.raise_for_status()

    async def export(self) -> None:
        """Send one metrics request and the pending log lines now."""
        if self.disabled:
            return
        metrics = await asyncio.to_thread(
            functools.partial(
                metrics_request,
                self.registry,
                self.node,
                start_ns=self._start_ns,
                service=self.service,
            )
        )
        lines = list(self._lines)
        self._lines.clear()
        for signal, path, body in (
            ("metrics", "/v1/metrics", metrics),
            ("logs", "/v1/logs", logs_request(lines, self.node, self.service) if lines else None),
        ):
            if body is None:
                continue
            try:
                await self._policy.acall(self._post, path, body)
                EXPORTS.labels(signal, "sent").inc()
            except Exception as exc:
                EXPORTS.labels(signal, "failed").inc()
                _log.warning("otlp_export_failed", signal=signal, error_class=type(exc).__name__)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.export()

    async def stop(self) -> None:
        """Stop the loop, send what is pending once more (bounded), close the client."""
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
        await self._client.aclose()
