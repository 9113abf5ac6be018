"""The metrics every layer reports into, defined once so names and labels agree.

Names follow OpenTelemetry's GenAI semantic conventions where they define the
measure: ``stalwart_model_request_duration_seconds`` is
``gen_ai.client.operation.duration`` and ``stalwart_model_tokens_total`` is
``gen_ai.client.token.usage``, with ``model`` (``gen_ai.request.model``),
``provider`` (``gen_ai.system``) and ``operation`` (``gen_ai.operation.name``)
labels. The default alert rules (``_alerts.default_rules``) read these series.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from stalwart.observe._metrics import REGISTRY

__all__ = [
    "AGENT_AT_CAPACITY",
    "AGENT_CLAIM_BATCH",
    "AGENT_CLAIM_DEFERRED",
    "AGENT_CLAIM_SIZE",
    "AGENT_TASKS_RUNNING",
    "BUDGET_USED_RATIO",
    "DEGRADED",
    "DEGRADATION_EVENTS",
    "DEGRADATION_SECONDS",
    "MODEL_CALL_TOKENS",
    "MODEL_COST",
    "MODEL_ERRORS",
    "MODEL_LATENCY",
    "MODEL_REQUESTS",
    "MODEL_TOKENS",
    "EFFECTS_UNKNOWN",
    "TASKS_FINISHED",
    "TASKS_QUARANTINED",
    "TASKS_SHED",
    "TASKS_SUBMITTED",
    "TASK_DURATION",
    "NODE_INFO",
    "TOOL_CALLS",
    "TRACE_SPANS",
]

MODEL_REQUESTS = Counter(
    "stalwart_model_requests",
    "Model requests (gen_ai operations) by model, provider and operation",
    ["model", "provider", "operation"],
    registry=REGISTRY,
)
MODEL_ERRORS = Counter(
    "stalwart_model_errors",
    "Failed model requests by model, provider and error class",
    ["model", "provider", "error_class"],
    registry=REGISTRY,
)
MODEL_LATENCY = Histogram(
    "stalwart_model_request_duration_seconds",
    "gen_ai.client.operation.duration: model request latency",
    ["model", "provider", "operation"],
    buckets=(0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96),
    registry=REGISTRY,
)
MODEL_TOKENS = Counter(
    "stalwart_model_tokens",
    "gen_ai.client.token.usage: tokens by model, provider and type (input, output)",
    ["model", "provider", "type"],
    registry=REGISTRY,
)
MODEL_CALL_TOKENS = Histogram(
    "stalwart_model_call_tokens",
    "gen_ai.client.token.usage: tokens per model call by model, provider and type",
    ["model", "provider", "type"],
    # the GenAI conventions' advised boundaries (powers of 4)
    buckets=tuple(4.0**i for i in range(14)),
    registry=REGISTRY,
)
MODEL_COST = Counter(
    "stalwart_model_cost_usd", "Spend on model calls in US dollars", ["model", "provider"],
    registry=REGISTRY,
)  # fmt: skip
TOOL_CALLS = Counter(
    "stalwart_tool_calls", "Tool calls by tool and outcome (ok, error, unavailable, denied)",
    ["tool", "outcome"], registry=REGISTRY,
)  # fmt: skip
TASKS_SUBMITTED = Counter("stalwart_tasks_submitted", "Tasks submitted", registry=REGISTRY)
TASKS_FINISHED = Counter(
    "stalwart_tasks_finished",
    "Tasks finished by outcome (completed, failed, quarantined)", ["outcome"],
    registry=REGISTRY,
)  # fmt: skip
AGENT_TASKS_RUNNING = Gauge(
    "stalwart_agent_tasks_running",
    "Tasks an agent's process runs now (at most its max_tasks)",
    ["agent"],
    registry=REGISTRY,
)
AGENT_AT_CAPACITY = Counter(
    "stalwart_agent_at_capacity",
    "Claim rounds an agent's process ended because it ran max_tasks tasks (the limit binds)",
    ["agent"],
    registry=REGISTRY,
)
AGENT_CLAIM_SIZE = Histogram(
    "stalwart_agent_claim_size",
    "Tasks an agent's process claimed per store transaction (count: claim transactions "
    "that took at least one task; sum: tasks claimed)",
    ["agent"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
    registry=REGISTRY,
)
AGENT_CLAIM_BATCH = Gauge(
    "stalwart_agent_claim_batch",
    "Most tasks an agent's process may claim in its next transaction: twice the last "
    "claim when its tasks started within a renewal tick, half when they did not, and no "
    "more than the process starts in a sixteenth of the lease (by the start time measured)",
    ["agent"],
    registry=REGISTRY,
)
AGENT_CLAIM_DEFERRED = Counter(
    "stalwart_agent_claim_deferred",
    "Claims an agent's process put off because its event loop lagged past a sixteenth "
    "of lease_seconds (its CPU, not max_tasks, is what binds)",
    ["agent"],
    registry=REGISTRY,
)
TASKS_QUARANTINED = Counter(
    "stalwart_tasks_quarantined",
    "Poison tasks quarantined (their execution killed their agent process too often), by agent",
    ["agent"], registry=REGISTRY,
)  # fmt: skip
TASKS_SHED = Counter(
    "stalwart_tasks_shed",
    "Tasks refused at admission (too many waiting: HTTP 429), by agent",
    ["agent"], registry=REGISTRY,
)  # fmt: skip
EFFECTS_UNKNOWN = Counter(
    "stalwart_effects_unknown",
    "At-most-once side effects whose outcome is unknown (interrupted mid-call), by tool",
    ["tool"], registry=REGISTRY,
)  # fmt: skip
TASK_DURATION = Histogram(
    "stalwart_task_duration_seconds", "Task duration from submission to its end",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800), registry=REGISTRY,
)  # fmt: skip
DEGRADED = Gauge(
    "stalwart_degraded", "1 while the component runs degraded (fallback model, tool down)",
    ["component"], registry=REGISTRY,
)  # fmt: skip
DEGRADATION_EVENTS = Counter(
    "stalwart_degradation_events", "Degradations entered, by component and kind",
    ["component", "kind"], registry=REGISTRY,
)  # fmt: skip
DEGRADATION_SECONDS = Counter(
    "stalwart_degradation_seconds", "Seconds spent degraded, by component", ["component"],
    registry=REGISTRY,
)  # fmt: skip
NODE_INFO = Gauge(
    "stalwart_node_info",
    "1 for the node serving these metrics: join on it to label any series by node",
    ["node", "version"], registry=REGISTRY,
)  # fmt: skip
BUDGET_USED_RATIO = Gauge(
    "stalwart_budget_used_ratio", "Spend as a share of its limit, by scope (task, agent, day)",
    ["scope"], registry=REGISTRY,
)  # fmt: skip
TRACE_SPANS = Counter(
    "stalwart_trace_spans",
    "Finished spans by outcome: exported, export_failed, dropped (the export queue was full)",
    ["outcome"], registry=REGISTRY,
)  # fmt: skip
