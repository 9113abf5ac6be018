"""EH-1, EH-2, EH-3: retries, circuit breakers, timeouts, against the app's dependencies."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from stalwart.config import TIMEOUT_RANGES, Timeouts
from stalwart.errors import NotExercised, StalwartError
from stalwart.llm import Message, ModelRequest, Provider, model_client
from stalwart.resilience import BreakerConfig, RetryPolicy
from stalwart.verify._poll import scheduling_lag
from stalwart.verify._registry import Outcome, check
from stalwart.verify._target import Target
from stalwart.verify._tool_faults import (
    HANG_SLACK_S,
    RETRY_SLACK_S,
    WAIT_EARLY_S,
    breaker_evidence,
    expected_wait,
    hang_tool,
    model_and_tools,
    retry_evidence,
    tool_breaker,
    tool_retries,
    waits_as_expected,
)

ASK = ModelRequest(messages=(Message("user", "What is 7 * 8?"),), max_tokens=32)


def _client(t: Target, model: str, **options: Any) -> Any:
    providers = {"sim": Provider(t.sim.base_url, api_key="verify")}
    return model_client(f"sim:{model}", providers=providers, **options)


def _requests(t: Target, model: str) -> int:
    return int(t.sim.world.stats[f"{model}:requests"])


def _primary(t: Target) -> tuple[str, str]:
    """The first fallback chain's primary model (``sim:strong`` -> ``strong``)."""
    chains = [list(v) for v in t.service.app.models.values() if v]
    if not chains:
        raise NotExercised(
            "the app has no model chain: there is no model dependency to fault",
            fix="nothing to add if the app calls no model",
        )
    if not chains[0][0].startswith("sim:"):
        raise NotExercised(
            f"the primary model {chains[0][0]!r} is not on the simulated provider, so "
            "verify cannot fault it",
            fix="verify the app with its chains on sim: models (App.sim=True)",
        )
    return chains[0][0], chains[0][0].partition(":")[2]


def _chain(t: Target) -> list[str]:
    """The first fallback chain (the one :func:`_primary` faults), primary first."""
    return next((list(v) for v in t.service.app.models.values() if v), [])


def _provider(t: Target, spec: str) -> Provider:
    """The app's provider of ``spec``: its retry policy and breaker are what EH-1/EH-2 test."""
    name = spec.partition(":")[0]
    return t.service.app.providers.get(name) or Provider("http://unused")


def _gaps(times: list[float]) -> list[float]:
    return [round(b - a, 4) for a, b in itertools.pairwise(times)]


async def _fresh_model_agents(t: Target) -> None:
    """Restart the agents that call models: each phase starts with closed breakers."""
    for agent in t.service.app.agents:
        if agent.model is None:
            continue
        before = time.time()
        if t.kill(agent.name) is not None:
            await t.wait_event("agent_restarted", timeout=15, after=before, agent=agent.name)


async def _run_one(t: Target, value: Any, prefix: str) -> Any:
    """Run the task ``value`` (a workload input known to call a model: chosen by
    ``Target.model_inputs`` before any fault, so a fault never skews the choice)."""
    [record] = await t.run_all([value], prefix=prefix)
    return record


@check(
    "EH-1",
    criterion=(
        "5xx retried with growing, jittered delays; Retry-After honoured; 400/401/403 tried "
        "exactly once; a tool's reset attempts (at its fault proxy or double) retried within "
        "its backoff bounds"
    ),
    does="faults the model provider with 503s, 429 + Retry-After, then 400/401/403; resets "
    "each tool's attempts at its fault proxy or its double",
    estimate_s=30,
    kills_per_model_agent=5,  # one per phase (503, 429, 400, 401, 403): closed breakers
)
async def retries(t: Target) -> Outcome:
    """The app's own retry policies: its model client's against a faulty primary (the
    simulated provider), each faultable tool's against resets at its fault proxy or double."""
    return await model_and_tools(
        t,
        _model_retries,
        tool_retries,
        lambda v: (
            f"{v.get('attempts_of_first_call')} attempt(s), waits {v.get('gaps_s')} s "
            f"(bounds {v.get('backoff_bounds_s')} s)"
            if v["status"] != "not-run"
            else str(v.get("why"))
        ),
        "is not retried as its policy says: a call that meets a reset connection must be "
        "retried with waits within the backoff bounds (@tool(retry=RetryPolicy(...)); "
        "docs/resilience.md)",
    )


async def _model_retries(t: Target) -> Outcome:
    """The app's own model client, in its agent process, against a faulty primary."""
    spec, model = _primary(t)
    arrivals = t.sim.world.arrivals[model]
    policy: RetryPolicy | None = _provider(t, spec).retry
    evidence: dict[str, Any] = {"dependency": spec, "policy": None}
    if policy is None:
        return Outcome(
            "failed",
            evidence,
            f"calls to {spec} are not retried: give its Provider a retry policy "
            "(the default, DEFAULT_RETRY, or your own; docs/resilience.md)",
        )
    evidence["policy"] = retry_evidence(policy)
    ok = True
    value = (await t.model_inputs(1, seed=701))[0]  # chosen before any fault
    try:
        await _fresh_model_agents(t)
        t.sim.world.set_fault(model, status=503)  # a 503 storm: retried, then the fallback
        mark = len(arrivals)
        async with scheduling_lag() as lag:
            record = await _run_one(t, value, "eh1-503")
        times = list(arrivals)[mark:]
        first_call = times[: policy.max_attempts]
        gaps = _gaps(first_call)
        expected = [list(expected_wait(policy, n)) for n in range(1, len(gaps) + 1)]
        evidence["503"] = {
            "attempts_of_first_call": len(first_call),
            "gaps_s": gaps,
            "backoff_bounds_s": [hi for _, hi in expected],
            "expected_waits_s": expected,
            "scheduling_lag_s": round(lag[0], 4),
            "task": record.status,
        }
        ok &= len(first_call) == policy.max_attempts and record.status == "succeeded"
        ok &= waits_as_expected(gaps, policy, RETRY_SLACK_S + lag[0])
        await _fresh_model_agents(t)
        t.sim.world.set_fault(model, status=429, retry_after=0.3, error_rate=0.5)
        mark = len(arrivals)
        record = await _run_one(t, value, "eh1-429")
        gaps = _gaps(list(arrivals)[mark : mark + 2])
        least, _ = expected_wait(policy, 1, retry_after=0.3)
        evidence["429"] = {
            "retry_after_s": 0.3,
            "least_wait_s": least,
            "gap_s": gaps,
            "task": record.status,
        }
        ok &= bool(gaps) and gaps[0] >= least - WAIT_EARLY_S and record.status == "succeeded"
        once: dict[str, Any] = {}
        # the rest of the chain: a primary call that fails permanently falls back once, so
        # the fallbacks' requests count the calls (the entry task's own usage does not
        # when it hands over to the agent that calls the model)
        fallbacks = [m.partition(":")[2] for m in _chain(t)[1:] if m.startswith("sim:")]
        for status in (400, 401, 403):  # permanent: tried once per call, never retried
            await _fresh_model_agents(t)
            t.sim.world.set_fault(model, status=status)
            before_calls = t.sim.world.stats[f"{model}:requests"]
            before_fb = sum(t.sim.world.stats[f"{m}:requests"] for m in fallbacks)
            record = await _run_one(t, value, f"eh1-{status}")
            usage = (record.outcome or {}).get("usage") or {}
            calls = max(1, int(usage.get("model_calls", 1)))
            fb = sum(t.sim.world.stats[f"{m}:requests"] for m in fallbacks) - before_fb
            once[str(status)] = {
                "requests": t.sim.world.stats[f"{model}:requests"] - before_calls,
                "calls": max(calls, fb),
                "fallback_requests": fb,
                "task": record.status,
            }
            ok &= 1 <= once[str(status)]["requests"] <= max(calls, fb)
        evidence["tried_once"] = once
    finally:
        t.sim.world.clear_faults(model)
    if ok:
        return Outcome("complete", evidence)
    return Outcome(
        "failed",
        evidence,
        "retry only retryable errors, with exponential backoff (full jitter by default), "
        "honouring Retry-After (docs/resilience.md)",
    )


def _breaker_state(spec: str) -> float | None:
    from stalwart.observe import REGISTRY

    return REGISTRY.get_sample_value("stalwart_breaker_state", {"dependency": spec})


@check(
    "EH-2",
    criterion=(
        "the breaker opens at its threshold, rejects fast while open, closes after half-open "
        "trials (the primary model; each tool with a fault proxy or a double)"
    ),
    does="blocks the model provider, then restores it; resets each tool's attempts at its "
    "fault proxy or double until its breaker opens, then restores it",
    estimate_s=30,
    kills_per_model_agent=1,
)
async def breakers(t: Target) -> Outcome:
    """The app's breakers: its primary model's (through the simulated provider) and each
    faultable tool's (resets at its fault proxy or double), each refused, then restored."""
    return await model_and_tools(
        t,
        _model_breaker,
        tool_breaker,
        lambda v: (
            f"opened after {len(v['connections_per_task_while_refused'])} task(s), reached "
            f"again after {v.get('reached_again_after_s')} s"
            if v["opened"]
            else str(v.get("why") or "kept calling its dead upstream")
        ),
        "kept calling its dead upstream: give the tool a breaker (@tool(breaker="
        "BreakerConfig(...)); the default is DEFAULT_BREAKER) and let failures reach it "
        "(docs/tools.md)",
    )


async def _model_breaker(t: Target) -> Outcome:
    """The app's breaker for its primary model: refused, then restored."""
    spec, model = _primary(t)
    config: BreakerConfig | None = _provider(t, spec).breaker
    # No early answer when the app has no breaker: the outage below shows what then happens
    # (every call still reaches the dead primary), so the item fails on behaviour.
    evidence: dict[str, Any] = {"dependency": spec, "breaker": breaker_evidence(config)}
    value = (await t.model_inputs(1, seed=800))[0]  # chosen before any fault
    await _fresh_model_agents(t)
    t.sim.world.set_fault(model, outage=True)
    opened = False
    reached: list[int] = []
    # Open means no call reaches the dead primary any more: judged at the sim, since every
    # agent process calling the model has its own breaker (the node's gauge shows the
    # state one of them shipped last).
    try:
        for n in range(8):
            before = _requests(t, model)
            record = await _run_one(t, value, f"eh2-open-{n}")
            reached.append(_requests(t, model) - before)
            if reached[-1] == 0:
                opened = True
                evidence["while_open"] = {"requests_reaching_the_primary": 0, "task": record.status}
                break
    finally:
        t.sim.world.clear_faults(model)
    evidence["opened"] = opened
    evidence["requests_reaching_the_primary_per_task"] = reached
    if not opened or config is None:
        why = "has no circuit breaker" if config is None else "kept calling a dead dependency"
        return Outcome(
            "failed",
            evidence,
            f"{spec} {why}: give its Provider a breaker (DEFAULT_BREAKER or your own) that "
            "opens under a full outage (failure_rate_threshold, minimum_calls; "
            "docs/resilience.md)",
        )
    started = time.monotonic()
    recovered = False
    async with asyncio.timeout(config.wait_duration_in_open + 30):
        while not recovered:  # half-open trials go through once the open period has passed
            await asyncio.sleep(1.0)  # the open period runs on the agents' clocks
            before = _requests(t, model)
            record = await _run_one(t, value, f"eh2-recover-{int(time.monotonic())}")
            recovered = _requests(t, model) > before and record.status == "succeeded"
    evidence["recovered_after_s"] = round(time.monotonic() - started, 2)
    evidence["state_shipped_to_node"] = _breaker_state(spec)
    ok = opened and recovered
    if ok:
        return Outcome("complete", evidence)
    return Outcome(
        "failed",
        evidence,
        "each dependency needs a failure-rate breaker that "
        "rejects fast while open and recovers through half-open",
    )


@check(
    "EH-3",
    criterion=(
        "every operation kind has a timeout inside the checklist range; each hang ends at its "
        "timeout (the model provider's; a tool's call, held at its fault proxy or double, "
        "within its attempts x timeout + waits)"
    ),
    does="lists timeouts per operation kind; hangs the model provider and black-holes each "
    "tool at its fault proxy or double",
    estimate_s=20,
)
async def timeouts(t: Target) -> Outcome:
    defaults = Timeouts()
    table = {
        kind: {"seconds": defaults.for_kind(kind), "allowed": TIMEOUT_RANGES[kind]}
        for kind in TIMEOUT_RANGES
    }
    tools = {tool.name: tool.timeout for agent in t.service.app.agents for tool in agent.tools}
    in_range = all(
        TIMEOUT_RANGES[kind][0] <= defaults.for_kind(kind) <= TIMEOUT_RANGES[kind][1]
        for kind in TIMEOUT_RANGES
    )
    tools_ok = all(
        TIMEOUT_RANGES["tool"][0] <= s <= TIMEOUT_RANGES["tool"][1] for s in tools.values()
    )
    evidence: dict[str, Any] = {"timeouts": table, "tool_timeouts_s": tools}
    limit = TIMEOUT_RANGES["model"][0]
    model_ok = True
    measured: list[str] = []
    if t.service.sim is not None:
        # a hanging model ends at its timeout (the smallest the checklist allows, 30 s)
        client = _client(t, "weak", retry=None, breaker=None)
        t.say("the model provider hangs")
        t.sim.world.set_fault("weak", hang=True, hang_s=120)
        started = time.monotonic()
        try:
            await client.complete(ASK, timeout=limit)
            hang_s = float("nan")
        except (StalwartError, TimeoutError):
            hang_s = time.monotonic() - started
        finally:
            t.sim.world.clear_faults("weak")
            await client.aclose()
        evidence["model_hang_ended_after_s"] = round(hang_s, 3)
        evidence["model_hang_timeout_s"] = limit
        model_ok = limit <= hang_s < limit + HANG_SLACK_S
        measured.append(f"model hang ended after {hang_s:.1f} s (timeout {limit} s)")
    else:
        evidence["model_hang"] = "not run: the app runs without the simulated provider"
    # each tool verify can fault (behind its fault proxy, or a double): held in turn
    hangs = {name: await hang_tool(t, name) for name in t.fault_tools()}
    if hangs:
        evidence["tool_hangs"] = hangs
        # the hung calls may have opened the tools' breakers: later items get a fresh node
        t.say("a fresh node (the hung tools' breakers may be open)")
        await t.restart()
        evidence["fresh_node_after"] = "the hung tools' breakers may be open"
    modes = t.tool_modes()
    evidence["tools_not_hung"] = {
        name: f"{mode}: neither a double nor a fault proxy (profile: 'proxy:<VAR>=<url>')"
        for name, (mode, _) in sorted(modes.items()) if name not in hangs
    }  # fmt: skip
    for name, h in hangs.items():
        measured.append(
            f"{name}: {h['calls']} call(s) through a black hole, longest {h['longest_call_s']} s"
            f" (bound {h['bound_s']:g} s: {h['attempts_at_most']} x {h['timeout_s']:g} s + waits)"
            if h["exercised"]
            else f"{name}: not called while its upstream hung"
        )
    exercised = [n for n, h in hangs.items() if h["exercised"]]
    text = "; ".join(measured) or "no hang exercised"
    if t.service.sim is None and not exercised:
        why = "no dependency verify can hang: the app runs without the simulated provider and " + (
            f"the workload never called {', '.join(hangs)} while its upstream hung"
            if hangs
            else "no tool has a double or a fault proxy"
        )
        return Outcome(
            "not-run",
            {**evidence, "why": why},
            "give tools doubles (@tool(double=fn)) or declare the tools that reach a service "
            "over TCP as 'proxy:<VAR>=<url>' in the verify profile (docs/verify.md, The "
            "profile), and make the workload reach them",
            text,
        )
    late = [n for n in exercised if not hangs[n]["ended_within_bound"]]
    if in_range and tools_ok and model_ok and not late:
        unreached = [n for n in hangs if n not in exercised]
        if unreached:
            return Outcome(
                "partial",
                evidence,
                f"the workload never called {', '.join(unreached)} while its upstream hung: "
                "add inputs that reach them",
                text,
            )
        return Outcome("complete", evidence, measured=text)
    return Outcome(
        "failed",
        evidence,
        "every operation kind needs a timeout inside the checklist's range, and a hang must "
        "end at it" + (f" ({', '.join(late)} ran past its attempts' timeouts)" if late else ""),
        text,
    )
