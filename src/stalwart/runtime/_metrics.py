from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from stalwart.observe import REGISTRY

__all__ = [
    "AGENTS_RUNNING",
    "AGENT_EXITS",
    "AGENT_RESTARTS",
    "CALLS",
    "CALL_SECONDS",
    "LATE_REPLIES",
    "MALFORMED_FRAMES",
    "SUPERVISOR_GIVE_UPS",
]

AGENTS_RUNNING = Gauge(
    "stalwart_agents_running", "Agent processes currently running", registry=REGISTRY
)
AGENT_EXITS = Counter(
    "stalwart_agent_exits_total",
    "Agent process exits by reason (normal, exit_code, killed, hung, memory_limit, ...)",
    ["agent", "reason"],
    registry=REGISTRY,
)
AGENT_RESTARTS = Counter(
    "stalwart_agent_restarts_total", "Restarts made by supervisors", ["agent"], registry=REGISTRY
)
SUPERVISOR_GIVE_UPS = Counter(
    "stalwart_supervisor_give_ups_total",
    "Supervisors that exceeded their restart intensity",
    ["supervisor"],
    registry=REGISTRY,
)
CALLS = Counter(
    "stalwart_agent_calls_total",
    "Inter-process calls by outcome (ok, remote_error, timeout, no_process)",
    ["outcome"],
    registry=REGISTRY,
)
CALL_SECONDS = Histogram(
    "stalwart_agent_call_seconds",
    "Round trip of inter-process calls",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
    registry=REGISTRY,
)
LATE_REPLIES = Counter(
    "stalwart_late_replies_total",
    "Replies that arrived after their call's deadline and were dropped",
    registry=REGISTRY,
)
MALFORMED_FRAMES = Counter(
    "stalwart_malformed_frames_total",
    "Frames from agent processes that could not be decoded",
    ["agent"],
    registry=REGISTRY,
)
