"""The guard at the agent's boundaries: inputs in, tool calls out, outputs written.

- :func:`prepare_input` validates and normalizes a task input against the
  agent's :class:`~stalwart.guard.Security` and records its provenance;
- :func:`guarded` applies the taint policy and its permit/forbid rules to a tool
  call the model proposed (allow, hold for approval, or refuse) — the runtime's
  decision, not the model's; the rules' trusted lookups run here, as journaled
  steps the model never sees;
- :func:`finish_output` redacts (or masks, or blocks) a task's output;
- :func:`build_rate_limiters` makes the agent's model rate limiters;
- :func:`scope_table` reports granted against least-needed scopes (SE-3).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from stalwart.errors import TaskSuspended
from stalwart.guard import (
    Approval,
    Origin,
    Principal,
    Security,
    canonical,
    output_redactor,
    split_input,
    validate_input,
)
from stalwart.resilience import RateLimiter
from stalwart.tools import ToolResult

if TYPE_CHECKING:
    from stalwart.agent._context import TaskContext

__all__ = [
    "build_rate_limiters",
    "finish_output",
    "guarded",
    "prepare_input",
    "refusals",
    "scope_table",
    "trusted_lookups",
]


def scope_table(agents: Iterable[Any]) -> list[dict[str, Any]]:
    """SE-3's table: each agent's tools, granted scopes, the least its tools need, and any
    excess (granted but needed by no tool: least privilege says remove it)."""
    rows = []
    for agent in agents:
        tools = list(getattr(agent, "tools", ()))
        needed = sorted({scope for t in tools for scope in t.scopes})
        granted = sorted(getattr(agent, "scopes", ()))
        rows.append(
            {
                "agent": agent.name,
                "tools": [t.name for t in tools],
                "sensitive": [t.name for t in tools if t.side_effect],
                "granted": granted,
                "minimal": needed,
                "excess": sorted(set(granted) - set(needed)),
            }
        )
    return rows


def build_rate_limiters(security: Security, agent: str) -> dict[str, RateLimiter]:
    """The agent's model rate limiters: ``"*"`` for all its calls, else per chain."""
    limits = dict(security.model_rates)
    if security.rate is not None:
        limits["*"] = security.rate
    return {
        key: RateLimiter(
            f"agent:{agent}" if key == "*" else f"model:{agent}:{key}",
            requests=rate.requests_per_minute,
            tokens=rate.tokens_per_minute,
            per=60.0,
        )
        for key, rate in limits.items()
    }


def prepare_input(ctx: TaskContext, task_input: Any, *, system: str = "") -> Any:
    """The validated, normalized input (raises :class:`~stalwart.errors.InputRejected`).

    A stored input that carries a principal (:func:`~stalwart.guard.wrap_input`) is
    unwrapped: the principal becomes the task's (``ctx.principal``); without one, the
    first of the policy's ``principal_fields`` present in the input names it, and all
    of them present are its attributes."""
    security = ctx.resources.security
    principal, task_input = split_input(task_input)
    cleaned, flags, hidden = validate_input(
        task_input, limits=security.inputs, schema=security.input_schema
    )
    if system:
        ctx.provenance.add(Origin.SYSTEM, system, source="system")
    ctx.provenance.add_input(cleaned, security.taint.principal_fields)
    if principal is None and isinstance(cleaned, dict):
        fields = security.taint.principal_fields
        found = {f: cleaned[f] for f in fields if isinstance(cleaned.get(f), str | int | float)}
        first = next((str(v).strip() for v in found.values() if str(v).strip()), "")
        if first:  # the first field present names it; all of them are its attributes
            principal = Principal(first[:512], attrs=found)
    ctx.provenance.set_identity(principal)
    if hidden:
        ctx.provenance.add(Origin.SUSPECT, hidden, source="input.hidden")
    if flags or hidden or ctx.provenance.flagged:
        ctx.resources.events.emit(
            "input_flagged", agent=ctx.resources.agent, task_id=ctx.task_id, flags=sorted(flags),
            injection_segments=ctx.provenance.flagged,
        )  # fmt: skip
    return cleaned


def finish_output(ctx: TaskContext, value: Any) -> Any:
    """``value`` through the output redactor (the accurate tier when its model is installed,
    ``STALWART_REDACT_OUTPUTS``) under the agent's output policy. Text this task got from
    a sub-task that succeeded (``ctx.vetted``) was redacted as that sub-task's output: it
    gets the fast tier only (issue 19: triage ran the named-entity model a second time
    over the resolver's already-redacted answer, ~30% of its CPU)."""
    redactor = output_redactor()
    return redactor.redact_data(value, policy=ctx.resources.security.output, vetted=ctx.vetted)


def refusals(ctx: TaskContext) -> int:
    """Tool calls the taint policy held or refused in this task (scope denials aside)."""
    return ctx.usage.held_tool_calls + ctx.usage.refused_tool_calls


async def guarded(
    ctx: TaskContext, name: str, arguments: dict[str, Any], *, side_effect: bool
) -> ToolResult | None:
    """None if the call may run; else the result the model is told instead."""
    res = ctx.resources
    lookups = await trusted_lookups(ctx, name, arguments)
    decision = res.security.taint.decide(
        name, arguments, ctx.provenance, side_effect=side_effect, lookups=lookups
    )
    if decision.verdict == "allow":
        return None
    if decision.verdict == "approve" and res.approvals is not None:
        if res.security.taint.durable_approvals:
            return await _held_durably(ctx, name, arguments, decision.reason)
        approvals = res.approvals
        reason = decision.reason
        wait = res.security.taint.approval_wait_s

        async def hold() -> dict[str, Any]:
            # inside one journaled step: a resumed task sees the same decision
            entry = await asyncio.to_thread(
                approvals.submit,
                task_id=ctx.task_id,
                agent=res.agent,
                tool=name,
                arguments=arguments,
                reason=reason,
            )
            deadline = time.monotonic() + wait
            pause = 0.05
            while entry.status == "pending" and time.monotonic() < deadline:
                await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                pause = min(pause * 2, 1.0)
                found = await asyncio.to_thread(approvals.get, entry.id)
                entry = found or entry
            return {"id": entry.id, "status": entry.status}

        held = await ctx.durable.step(f"approval:{name}", hold)
        if held["status"] == "approved":
            res.events.emit(
                "tool_call_approved", agent=res.agent, task_id=ctx.task_id, tool=name,
                approval=held["id"],
            )  # fmt: skip
            return None
        ctx.usage.held_tool_calls += 1
        res.events.emit(
            "tool_call_held", agent=res.agent, task_id=ctx.task_id, tool=name,
            approval=held["id"], status=held["status"], reason=reason,
        )  # fmt: skip
        return ToolResult(
            name,
            "denied",
            error=f"held for a person's approval ({held['id']}, {held['status']}): {reason}. "
            "It did not run; tell the customer a colleague will follow up.",
        )
    ctx.usage.refused_tool_calls += 1
    res.events.emit(
        "tool_call_refused", agent=res.agent, task_id=ctx.task_id, tool=name,
        reason=decision.reason,
    )  # fmt: skip
    return ToolResult(name, "denied", error=f"refused by the runtime: {decision.reason}")


async def trusted_lookups(
    ctx: TaskContext, name: str, arguments: dict[str, Any]
) -> dict[tuple[str, str, str], Any]:
    """Run the trusted lookups the policy's rules need for this call (each a journaled
    ``lookup:<tool>`` step, once per key in a task). A lookup tool the agent is not
    granted, one with side effects, or one that fails gives no record (None): the
    conditions that need it do not hold."""
    res = ctx.resources
    found: dict[tuple[str, str, str], Any] = {}
    for lookup, param, key in res.security.taint.lookups_needed(name, arguments):
        index = (lookup, param, canonical(key))
        if index in ctx.lookups:
            found[index] = ctx.lookups[index]
            continue
        tool = res.tools.get(lookup)
        if tool is None or tool.side_effect or res.tools.authorize(lookup, res.scopes):
            found[index] = None
            continue

        async def run(tool: Any = tool, param: str = param, key: Any = key) -> dict[str, Any]:
            result = await tool.invoke({param: key}, events=res.events, breakers=res.tools.breakers)
            data: dict[str, Any] = result.as_data()
            return data

        raw = await ctx.durable.step(f"lookup:{lookup}", run)
        result = msgspec.convert(raw, ToolResult)
        found[index] = ctx.lookups[index] = result.value if result.ok else None
    return found


async def _held_durably(
    ctx: TaskContext, name: str, arguments: dict[str, Any], reason: str
) -> ToolResult | None:
    """A held call under durable approvals: suspend the task until a person decides.

    The decision is journaled once made (step ``approval:<tool>``); until then
    nothing is journaled and :class:`~stalwart.errors.TaskSuspended` parks the
    task. When it is woken, the replay reaches this call again, finds the
    decision in the queue and records it: approved, the call runs (once: it is
    its own journaled step or ledgered effect); denied (by a person or by the
    deadline), the model is told so.
    """
    res = ctx.resources
    approvals = res.approvals
    assert approvals is not None
    step = f"approval:{name}"
    if ctx.durable.replaying:  # decided in an earlier attempt: the journal answers
        held: dict[str, Any] = await ctx.durable.step(step, _never)
    else:
        entry: Approval = await asyncio.to_thread(
            approvals.submit,
            task_id=ctx.task_id,
            agent=res.agent,
            tool=name,
            arguments=arguments,
            reason=reason,
        )
        if entry.status == "pending":
            deadline = entry.created + res.security.taint.approval_deadline(name)
            waiting = {
                "awaiting": "approval",
                "approval": entry.id,
                "tool": name,
                "reason": reason,
                "deadline": deadline,
            }
            res.events.emit(
                "task_suspended", agent=res.agent, task_id=ctx.task_id, tool=name,
                approval=entry.id, deadline=deadline,
            )  # fmt: skip
            raise TaskSuspended(
                f"task {ctx.task_id} waits for approval {entry.id} of {name}", waiting=waiting
            )
        decided = {"id": entry.id, "status": entry.status, "by": entry.decided_by}
        held = await ctx.durable.step(step, lambda: decided)
    if held["status"] == "approved":
        res.events.emit(
            "tool_call_approved", agent=res.agent, task_id=ctx.task_id, tool=name,
            approval=held["id"],
        )  # fmt: skip
        return None
    ctx.usage.held_tool_calls += 1
    by = held.get("by")
    res.events.emit(
        "tool_call_held", agent=res.agent, task_id=ctx.task_id, tool=name,
        approval=held["id"], status=held["status"], reason=reason, by=by,
    )  # fmt: skip
    why = (
        "no one decided it before its approval deadline"
        if by == "deadline"
        else f"a person ({by or 'unknown'}) denied it"
    )
    return ToolResult(
        name,
        "denied",
        error=f"held for approval ({held['id']}) and {why}: {reason}. It did not run; "
        "do not retry it, tell the customer a colleague will follow up.",
    )


def _never() -> dict[str, Any]:
    raise AssertionError("a replayed approval step never runs")  # pragma: no cover
