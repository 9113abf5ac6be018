"""A task's calls to other agents: :meth:`TaskContext.call_agent` (a message through the
node, with a deadline) and :meth:`TaskContext.hand_over` (a durable sub-task), each one
journaled step under an ``invoke_agent`` span."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stalwart.errors import ConfigError
from stalwart.guard import wrap_input
from stalwart.observe import AttrValue, start_span
from stalwart.resilience import Policy, RetryPolicy

if TYPE_CHECKING:
    from stalwart.agent._context import TaskContext

__all__ = ["call_peer", "hand_over_to"]


async def call_peer(
    ctx: TaskContext, name: str, payload: Any, *, timeout: float, retry: bool = False
) -> Any:
    """``ctx``'s journaled call of agent ``name`` (see :meth:`TaskContext.call_agent`)."""
    res = ctx.resources
    _check_may(ctx, "call", name)
    if res.runtime is None:
        raise ConfigError("call_agent needs the agent to run under a node")
    runtime = res.runtime
    # A callee that is restarting answers NoProcess at once; with ``retry`` that is
    # retried within the deadline (inside the step: only the final outcome is journaled).
    policy = _agent_policy(name, timeout, retry=retry)

    async def call() -> Any:
        return await policy.acall(runtime.call, name, payload, timeout=timeout)

    with _agent_span(ctx, name):
        return await ctx.durable.step(f"agent:{name}", call)


def _check_may(ctx: TaskContext, verb: str, name: str) -> None:
    """Refuse (ConfigError) a call or hand-over to an agent the app does not let
    ``ctx``'s agent reach."""
    res = ctx.resources
    if name not in res.callable_agents:
        raise ConfigError(
            f"agent {res.agent!r} may not {verb} {name!r} (allowed: {sorted(res.callable_agents)})"
        )


def _agent_span(ctx: TaskContext, name: str) -> Any:
    """The ``invoke_agent`` client span of a call or hand-over to ``name``: the callee's
    task span is its child (the runtime carries the context on the message)."""
    attributes: dict[str, AttrValue] = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": name,
        "stalwart.replayed": ctx.durable.replaying,
    }
    return start_span(f"invoke_agent {name}", attributes, kind="client")


async def hand_over_to(ctx: TaskContext, name: str, task_input: Any, *, timeout: float) -> Any:
    """``ctx``'s sub-task for agent ``name`` and its outcome (see
    :meth:`TaskContext.hand_over`); the strings of a sub-task that succeeded join
    ``ctx.vetted``."""
    outcome = await _hand_over(ctx, name, task_input, timeout=timeout)
    # A sub-task that succeeded stored its output redacted by its agent's output tier
    # (``finish_output``); fields added after that (a result flagged for effects of
    # unknown outcome) were not, so such a result vets nothing.
    result = outcome.get("result") if isinstance(outcome, dict) else None
    if (
        isinstance(outcome, dict)
        and outcome.get("status") == "succeeded"
        and not (isinstance(result, dict) and "outcome_unknown" in result)
    ):
        _strings(result, ctx.vetted)
    return outcome


async def _hand_over(ctx: TaskContext, name: str, task_input: Any, *, timeout: float) -> Any:
    sub_id = f"{ctx.task_id}.{name}.{ctx.durable.position}"
    task_input = wrap_input(task_input, ctx.principal)
    handovers = ctx.resources.handovers
    if handovers is None:
        return await ctx.call_agent(
            name, {"task_id": sub_id, "input": task_input}, timeout=timeout, retry=True
        )
    _check_may(ctx, "hand over to", name)

    # Every part of a hand-over is idempotent (create-if-missing, then wait), so a
    # transient failure (the store locked or restarting) is retried within the deadline,
    # as the call-based hand-over retried its callee's.
    policy = _agent_policy(name, timeout, retry=True)

    async def run() -> Any:
        return await policy.acall(handovers.run, name, sub_id, task_input, timeout=timeout)

    # the same step name as a call-based hand-over: journals replay across the change.
    # Its record is a lazy commit (redone if lost, as a model call's): run again, it finds
    # the sub-task it created (create-if-missing by ``sub_id``) and its outcome, so an OS
    # crash that loses the record costs a look-up, not a second sub-task; the task's
    # next ordinary commit (its result) makes it durable.
    with _agent_span(ctx, name):
        outcome, _ = await ctx.durable.step_joined(f"agent:{name}", run, None, redone_if_lost=True)
        return outcome


def _strings(value: Any, into: set[str], depth: int = 0) -> None:
    """Every string in JSON-like ``value`` (keys aside), added to ``into``."""
    if isinstance(value, str):
        into.add(value)
    elif depth < 64 and isinstance(value, Mapping):
        for v in value.values():
            _strings(v, into, depth + 1)
    elif depth < 64 and isinstance(value, list | tuple):
        for v in value:
            _strings(v, into, depth + 1)


def _agent_policy(name: str, timeout: float, *, retry: bool) -> Policy:
    """The policy of a call or hand-over to agent ``name``: bounded by ``timeout``, and
    with ``retry``, transient failures retried within it (no breaker: an agent is not a
    remote dependency)."""
    attempts = RetryPolicy(max_attempts=20, base=0.05, cap=1.0, deadline=timeout)
    return Policy(f"agent:{name}", timeout=timeout, breaker=None, retry=attempts if retry else None)
