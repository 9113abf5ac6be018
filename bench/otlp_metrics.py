"""Metrics over OTLP: stalwart's hand-written exporter against the OpenTelemetry SDK's.

Writes ``bench/results/otlp_metrics.json``. stalwart's metrics live in a
``prometheus_client`` registry (``/metrics`` and the alert rules read it, agent
processes ship theirs into the node's), and the SDK's metric exporter can only send
what was recorded into SDK instruments. So using the SDK means recording every
measurement twice; this bench prices both halves, as this thread's CPU time:

- **per export**: the node's registry, populated as a busy node's would be (6 models,
  20 tools, 10 agents: see ``populate``), turned into one OTLP request body. Hand-written:
  ``metrics_request`` + ``json.dumps`` (what ``OtlpExporter.export`` sends). SDK: the
  same series mirrored into SDK instruments, then ``InMemoryMetricReader`` collection
  + ``encode_metrics(...).SerializeToString()`` (what its OTLP/HTTP exporter sends,
  minus the POST). Median of ``reps`` exports each: ``export_{hand,sdk}_p50_us``.
- **per measurement** (the call path): ``Counter.labels(...).inc()`` and
  ``Histogram.labels(...).observe()`` alone, and the SDK instrument's ``add`` /
  ``record`` with the GenAI attributes that would run beside them:
  ``record_{prom,sdk}_{counter,histogram}_us`` (mean of 20 000 in a loop, best of 5).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, Counter, Histogram

import stalwart.server  # noqa: F401 - registers every metric a node has
from stalwart.observe import REGISTRY, catalog
from stalwart.server._otlp import metrics_request

RESULTS = pathlib.Path(__file__).parent / "results" / "otlp_metrics.json"


def populate() -> None:
    """The series a busy node holds: 6 models on 2 providers, 20 tools, 10 agents."""
    for i in range(6):
        model, provider = f"model-{i}", ("openai", "anthropic")[i % 2]
        catalog.MODEL_REQUESTS.labels(model, provider, "chat").inc(100)
        for cls in ("retryable", "systemic", "permanent"):
            catalog.MODEL_ERRORS.labels(model, provider, cls).inc()
        for j in range(50):
            catalog.MODEL_LATENCY.labels(model, provider, "chat").observe(0.01 * j)
            for kind in ("input", "output"):
                catalog.MODEL_CALL_TOKENS.labels(model, provider, kind).observe(10 * j)
        for kind in ("input", "output"):
            catalog.MODEL_TOKENS.labels(model, provider, kind).inc(5000)
        catalog.MODEL_COST.labels(model, provider).inc(1.5)
    for t in range(20):
        for outcome in ("ok", "error", "unavailable", "denied"):
            catalog.TOOL_CALLS.labels(f"tool-{t}", outcome).inc()
    for a in range(10):
        catalog.AGENT_TASKS_RUNNING.labels(f"agent-{a}").set(a)
        catalog.TASKS_SHED.labels(f"agent-{a}").inc()
    for d in range(100):
        catalog.TASK_DURATION.observe(d * 0.7)


def mirror(registry: CollectorRegistry) -> InMemoryMetricReader:
    """The same series recorded into SDK instruments (what using the SDK would mean)."""
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("stalwart")
    for family in registry.collect():
        if family.type == "counter":
            counter = meter.create_counter(family.name, description=family.documentation)
            for s in family.samples:
                if s.name.endswith("_total"):
                    counter.add(s.value, dict(s.labels))
        elif family.type == "gauge":
            gauge = meter.create_gauge(family.name, description=family.documentation)
            for s in family.samples:
                gauge.set(s.value, dict(s.labels))
        elif family.type == "histogram":
            bounds = sorted(
                {float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket")}
                - {float("inf")}
            )
            hist = meter.create_histogram(
                family.name, explicit_bucket_boundaries_advisory=bounds or None
            )
            for s in family.samples:
                if s.name.endswith("_bucket") and s.value:
                    labels = {k: v for k, v in s.labels.items() if k != "le"}
                    le = float(s.labels["le"])
                    hist.record(le if le != float("inf") else 1e9, labels)
    return reader


def cpu_us(fn: Callable[[], Any], reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.thread_time_ns()
        fn()
        out.append((time.thread_time_ns() - t0) / 1e3)
    return out


def per_call_us(fn: Callable[[], Any], n: int = 20_000) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.thread_time_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.thread_time_ns() - t0) / n / 1e3)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args()
    reps = 50 if args.quick else 200
    populate()
    reader = mirror(REGISTRY)

    def hand() -> bytes:
        return json.dumps(metrics_request(REGISTRY, "node-1", start_ns=0)).encode()

    def sdk() -> bytes:
        data = reader.get_metrics_data()
        assert data is not None
        return encode_metrics(data).SerializeToString()

    body_hand, body_sdk = hand(), sdk()
    points = sum(
        len(m[k]["dataPoints"])
        for m in metrics_request(REGISTRY, "node-1", start_ns=0)["resourceMetrics"][0][
            "scopeMetrics"
        ][0]["metrics"]
        for k in ("sum", "gauge", "histogram")
        if k in m
    )
    export_hand, export_sdk = cpu_us(hand, reps), cpu_us(sdk, reps)

    scratch = CollectorRegistry()
    prom_counter = Counter("c", "c", ["model", "provider", "operation"], registry=scratch)
    prom_hist = Histogram(
        "h", "h", ["model", "provider", "operation"], registry=scratch,
        buckets=(0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96),
    )  # fmt: skip
    meter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("stalwart")
    sdk_counter = meter.create_counter("c")
    sdk_hist = meter.create_histogram("h")
    attrs = {
        "gen_ai.request.model": "model-0",
        "gen_ai.provider.name": "openai",
        "gen_ai.operation.name": "chat",
    }
    result: dict[str, object] = {
        "series_points": points,
        "body_bytes_hand_json": len(body_hand),
        "body_bytes_sdk_protobuf": len(body_sdk),
        "export_hand_p50_us": statistics.median(export_hand),
        "export_sdk_p50_us": statistics.median(export_sdk),
        "record_prom_counter_us": per_call_us(
            lambda: prom_counter.labels("model-0", "openai", "chat").inc()
        ),
        "record_sdk_counter_us": per_call_us(lambda: sdk_counter.add(1, attrs)),
        "record_prom_histogram_us": per_call_us(
            lambda: prom_hist.labels("model-0", "openai", "chat").observe(0.3)
        ),
        "record_sdk_histogram_us": per_call_us(lambda: sdk_hist.record(0.3, attrs)),
        "meta": {
            "mode": "quick" if args.quick else "full",
            "reps": reps,
            "statistic": "export: median of this thread's CPU per export; record: mean "
            "CPU per call over 20 000 calls, best of 5",
            "python": sys.version.split()[0],
            "machine": platform.machine(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
