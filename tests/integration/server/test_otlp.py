"""The optional OTLP exporter: what a node sends parses as the OTLP protobuf messages."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests._loopback import serving

from stalwart.observe import catalog, configure_logging, get_logger
from stalwart.runtime import ChildSpec, SupervisorSpec
from stalwart.server._otlp import OtlpExporter, otel_settings
from stalwart.testing import ProbeAgent


async def test_node_exports_metrics_and_logs_as_valid_otlp(start_node, receiver):
    configure_logging()  # the JSON pipeline (its sinks feed the exporter)
    catalog.MODEL_LATENCY.labels("sim-strong", "sim", "chat").observe(0.2)
    catalog.MODEL_CALL_TOKENS.labels("sim-strong", "sim", "input").observe(120)
    root = SupervisorSpec("root", [ChildSpec("a", ProbeAgent)])
    base = receiver.url.removesuffix("/hook")
    n = await start_node(root, otlp_endpoint=base, otlp_interval_s=0.2)
    get_logger("test").info("otlp_probe_line", task_id="T-otlp")
    await receiver.wait_for(lambda b: "otlp_probe_line" in json.dumps(b))
    await receiver.wait_for(lambda b: any("resourceMetrics" in x for x in b))
    metrics = ExportMetricsServiceRequest()
    json_format.ParseDict(next(x for x in receiver.bodies if "resourceMetrics" in x), metrics)
    (rm,) = metrics.resource_metrics
    names = {m.name for m in rm.scope_metrics[0].metrics}
    assert {
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "stalwart_agents_running",
    } <= names
    usage = next(m for m in rm.scope_metrics[0].metrics if m.name == "gen_ai.client.token.usage")
    assert usage.unit == "{token}"
    assert any(
        {a.key: a.value.string_value for a in p.attributes}.get("gen_ai.token.type") == "input"
        for p in usage.histogram.data_points
    )
    duration = next(
        m for m in rm.scope_metrics[0].metrics if m.name == "gen_ai.client.operation.duration"
    )

    def attributes(p):
        return {a.key: a.value.string_value for a in p.attributes}

    # the registry is process-wide: other tests may have left their own models' points
    point = next(
        p
        for p in duration.histogram.data_points
        if attributes(p)["gen_ai.request.model"] == "sim-strong"
    )
    attrs = attributes(point)
    assert attrs["gen_ai.request.model"] == "sim-strong" and point.count >= 1
    assert len(point.bucket_counts) == len(point.explicit_bounds) + 1
    logs = ExportLogsServiceRequest()
    found = []
    for body in receiver.bodies:
        if "resourceLogs" in body:
            json_format.ParseDict(body, logs)
            for rl in logs.resource_logs:
                for record in rl.scope_logs[0].log_records:
                    attrs = {a.key: a.value.string_value for a in record.attributes}
                    if attrs.get("event") == "otlp_probe_line":
                        found.append((attrs["task_id"], record.severity_text))
    assert ("T-otlp", "INFO") in found
    assert n.service.otlp is not None
    await n.close()  # stop the node (and its exporter) while the receiver still listens


def test_otel_variables_give_headers_per_signal_the_service_name_and_the_off_switch():
    settings = otel_settings(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
            "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20abc, x-tenant=t1",
            "OTEL_EXPORTER_OTLP_LOGS_HEADERS": "x-tenant=logs-only",
            "OTEL_SERVICE_NAME": "helpdesk",
        }
    )
    assert not settings.disabled and settings.service == "helpdesk"
    assert settings.headers["metrics"] == {"authorization": "Bearer abc", "x-tenant": "t1"}
    assert settings.headers["logs"] == {"authorization": "Bearer abc", "x-tenant": "logs-only"}
    assert settings.urls == {
        "metrics": "http://collector:4318/v1/metrics",
        "logs": "http://collector:4318/v1/logs",
    }
    assert otel_settings({"OTEL_SDK_DISABLED": "TRUE"}).disabled
    empty = otel_settings({})
    assert empty.urls == {"metrics": None, "logs": None} and empty.service == "stalwart"
    # stalwart's own otlp_endpoint wins over the variable's
    assert (
        otel_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318"}, "http://b:4318").urls[
            "logs"
        ]
        == "http://b:4318/v1/logs"
    )


def test_otel_variables_for_timeouts_compression_protocol_interval_and_resource():
    settings = otel_settings(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
            "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "700",
            "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION": "gzip",
            "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "grpc",
            "OTEL_METRIC_EXPORT_INTERVAL": "30000",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,service.name=from-attrs",
        }
    )
    assert settings.timeouts == {"metrics": 0.7, "logs": 2.5}
    assert settings.gzip == {"metrics": False, "logs": True}
    assert settings.urls["logs"] is None and "grpc" in settings.refused["logs"]
    assert settings.interval == 30.0 and settings.service == "from-attrs"
    assert settings.resource == {"deployment.environment": "prod"}
    off = otel_settings(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_LOGS_EXPORTER": "none"}
    )
    assert off.urls == {"metrics": "http://c:4318/v1/metrics", "logs": None}
    with pytest.raises(ValueError, match="OTEL_METRIC_EXPORT_INTERVAL"):
        otel_settings({"OTEL_METRIC_EXPORT_INTERVAL": "soon"})


class _Collector:
    """A loopback OTLP/HTTP receiver: each POST's path, headers and (gunzipped) JSON body."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], dict[str, Any]]] = []

    async def post(self, request: Request) -> Response:
        raw = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        self.posts.append((request.url.path, dict(request.headers), json.loads(raw)))
        return Response("{}", media_type="application/json")


async def test_the_exporter_follows_the_otel_variables_on_the_wire(tmp_path):
    """Per-signal endpoint, headers, gzip and resource reach a real receiver; a CA file that
    is not there fails at start-up."""
    collector = _Collector()
    app = Starlette(routes=[Route("/{path:path}", collector.post, methods=["POST"])])
    async with serving(app) as url:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": url,
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{url}/tenant-a/metrics",
            "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20t0k",
            "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION": "gzip",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=staging",
            "OTEL_SERVICE_NAME": "helpdesk",
        }
        exporter = OtlpExporter(None, "node-1", env=env)
        exporter._sink({"event": "probe", "level": "info", "task_id": "T1"}, '{"event":"probe"}')
        await exporter.export()
        await exporter.stop()
    by_path = {path: (headers, body) for path, headers, body in collector.posts}
    assert set(by_path) == {"/tenant-a/metrics", "/v1/logs"}
    for headers, body in by_path.values():
        assert headers["authorization"] == "Bearer t0k"
        (resource,) = [*body.get("resourceMetrics", []), *body.get("resourceLogs", [])]
        attrs = {a["key"]: a["value"]["stringValue"] for a in resource["resource"]["attributes"]}
        assert attrs == {
            "deployment.environment": "staging",
            "service.name": "helpdesk",
            "service.instance.id": "node-1",
        }
    assert by_path["/v1/logs"][0]["content-encoding"] == "gzip"
    assert "content-encoding" not in by_path["/tenant-a/metrics"][0]
    with pytest.raises(FileNotFoundError):
        OtlpExporter(
            "https://c:4318", "n", env={"OTEL_EXPORTER_OTLP_CERTIFICATE": str(tmp_path / "ca.pem")}
        )
