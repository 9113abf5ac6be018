"""The log level of each event the runtime, the node and the server emit.

One rule (docs/observability.md#event-levels): what an operator must look at is
``warning`` -- an abnormal exit, a kill, a degradation, an unknown outcome -- or
``error`` when stalwart gave up on something (a supervisor past its restart
intensity, a quarantined task, a node that could not start, a critical alert).
Normal lifecycle and per-call lines are ``info``. An event this table does not
name logs at ``info``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

__all__ = ["EVENT_LEVELS", "NORMAL_EXIT_REASONS", "Level", "event_level"]

Level = Literal["info", "warning", "error"]

NORMAL_EXIT_REASONS = frozenset({"normal", "shutdown", "restart_requested"})
"""``agent_exited`` reasons that are not failures: the agent returned, the node stopped
it, or an operator asked for a restart (``POST /agents/{name}/restart``)."""


def _agent_exited(fields: Mapping[str, Any]) -> Level:
    return "info" if fields.get("reason") in NORMAL_EXIT_REASONS else "warning"


def _alert_firing(fields: Mapping[str, Any]) -> Level:
    return "error" if fields.get("severity") == "critical" else "warning"


def _breaker_transition(fields: Mapping[str, Any]) -> Level:
    return "warning" if fields.get("to_state") in ("open", "forced_open") else "info"


_Rule = Level | Callable[[Mapping[str, Any]], Level]

EVENT_LEVELS: dict[str, _Rule] = {
    # runtime: agent processes and supervisors
    "agent_exited": _agent_exited,
    "agent_hung": "warning",
    "agent_task_timeout": "warning",
    "agent_memory_limit": "warning",
    "agent_shutdown_timeout": "warning",
    "agent_restart_failed": "error",
    "supervisor_gave_up": "error",
    "supervisor_shutdown_timeout": "warning",
    "protocol_error": "warning",
    "malformed_frame": "warning",
    "cast_dropped": "warning",
    "exit_hook_failed": "warning",
    "forkserver_died": "error",
    "node_stalled": "warning",
    # node
    "node_start_failed": "error",
    "node_service_stop_failed": "error",
    "task_killed_agent": "warning",
    "task_quarantined": "error",
    "task_failed": "error",
    "budget_exceeded": "warning",
    "budget_warning": "warning",
    "durable.effect_outcome_unknown": "warning",
    "durable.lease_lost": "warning",
    "durable.lease_abandoned": "error",
    "durable.record_quarantined": "error",
    # dependencies, models, tools, guard
    "breaker_transition": _breaker_transition,
    "breaker_overrides_unreadable": "warning",
    "dependency_error": "warning",
    "dependency_gave_up": "warning",
    "degradation_started": "warning",
    "model_failed_over": "warning",
    "model_fallback": "warning",
    "injection_suspected": "warning",
    "input_flagged": "warning",
    # server
    "alert_firing": _alert_firing,
    "alert_evaluator_failed": "error",
}
"""Event name to level, or to a function of the event's fields for the few whose level
depends on them (an exit's reason, an alert's severity, a breaker's new state)."""


def event_level(name: str, fields: Mapping[str, Any]) -> Level:
    """The level ``name`` with ``fields`` is logged at (``info`` for an unlisted name)."""
    rule = EVENT_LEVELS.get(name, "info")
    return rule if isinstance(rule, str) else rule(fields)
