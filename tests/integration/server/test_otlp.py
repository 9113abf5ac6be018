"""The optional OTLP exporter: what a node sends parses as the OTLP protobuf messages."""

from __future__ import annotations

import json

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from stalwart.observe import catalog, configure_logging, get_logger
from stalwart.runtime import ChildSpec, SupervisorSpec
from stalwart.server._otlp import otel_settings
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
    disabled, headers, service = otel_settings(
        {
            "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20abc, x-tenant=t1",
            "OTEL_EXPORTER_OTLP_LOGS_HEADERS": "x-tenant=logs-only",
            "OTEL_SERVICE_NAME": "helpdesk",
        }
    )
    assert not disabled and service == "helpdesk"
    assert headers["metrics"] == {"authorization": "Bearer abc", "x-tenant": "t1"}
    assert headers["logs"] == {"authorization": "Bearer abc", "x-tenant": "logs-only"}
    assert otel_settings({"OTEL_SDK_DISABLED": "TRUE"})[0]
    assert otel_settings({})[1:] == ({"metrics": {}, "logs": {}}, "stalwart")
