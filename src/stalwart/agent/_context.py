"""The context a task runs with: durable steps plus journaled model, tool and agent calls
(the calls to other agents are in ``_peers.py``; what the context holds, in ``_resources.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import msgspec

from stalwart.agent._guarded import guarded
from stalwart.agent._messages import assistant_message, streamed, to_message
from stalwart.agent._peers import call_peer, hand_over_to
from stalwart.agent._resources import Resources, Usage
from stalwart.durable import Context, Joined
from stalwart.errors import ConfigError, OutcomeUnknown, StalwartError, StoreError
from stalwart.guard import Principal, Provenance, Reservation, estimate_tokens
from stalwart.llm import (
    FallbackChain,
    ModelClient,
    ModelRequest,
    ResponseFormat,
    StreamingModelClient,
    ToolSpec,
)
from stalwart.observe import (
    AttrValue,
    get_logger,
    set_span_attributes,
    set_span_error,
    start_span,
)
from stalwart.tools import ToolResult

__all__ = ["TaskContext"]

_log = get_logger("stalwart.tools")

LAZY_MODEL_RECORDS = True
"""A model call's journal record (and its spend settlement), and the record of a call of a
tool without side effects, is a lazy commit: not fsynced on its own, made durable by the
next ordinary commit, which every side effect, approval, sub-task and result makes before
it is visible (``docs/durable.md``, *What ``full`` guarantees*). False fsyncs each on its
own (the benches compare the two). On
PostgreSQL a record that carries a spend settlement commits as an ordinary one
(:meth:`stalwart.durable.Store.joins_lazily`)."""


RESERVE_AHEAD = True
"""``call_model(reserve_next=True)`` takes the next call's reservation with this call's
settle. False: every call reserves on its own, as before reserve_next (the adapter benches
compare the two in one run)."""


AHEAD_TOKENS = 2048
"""What a reservation taken ahead for the loop's next model call allows for the tool
results that will join its prompt (tokens, on top of the prompt and reply so far): a next
call whose prompt turns out larger reserves again, as without it."""


@dataclasses.dataclass(slots=True)
class _Ahead:
    """A reservation taken for the next model call with the last one's settle (its
    lazy commit's ``mark``: see :meth:`stalwart.durable.Context.synced`)."""

    reservation: Reservation
    mark: int
    syncing: asyncio.Future[None] | None = None
    """A sync of the task's commits started for it (:meth:`TaskContext.call_tool`: while
    a tool without side effects runs), awaited before the call it is for is sent."""

    def is_durable(self, journal: Context) -> bool:
        """Whether the reservation is durable: an ordinary commit of ``journal`` (the
        task's), or a sync of its commits, came after the lazy commit that took it."""
        return journal.synced(self.mark)

    def sync_started(self, journal: Context) -> asyncio.Future[None] | None:
        """The sync of ``journal``'s commits that makes the reservation durable: the one
        started already, or one started now; None when it is durable already."""
        if self.syncing is None and not self.is_durable(journal):
            self.syncing = asyncio.ensure_future(journal.sync())
        return self.syncing

    def drop_sync(self) -> None:
        """Let go of a sync nobody will wait for (its failure only cost the shortcut)."""
        syncing, self.syncing = self.syncing, None
        if syncing is None:
            return
        if not syncing.done():
            syncing.cancel()
        elif not syncing.cancelled():
            syncing.exception()  # retrieved: asyncio does not log it as never seen


class TaskContext:
    """A durable :class:`~stalwart.durable.Context` plus the agent's model, tools and peers.

    Every method that reaches outside (``call_model``, ``call_tool``,
    ``call_agent``) is a journaled step, so a task killed mid-way resumes
    without repeating any of them; side-effect tools go through the idempotency
    ledger (``ctx.effect``).
    """

    def __init__(self, durable: Context, resources: Resources, *, model: str | None) -> None:
        self.durable = durable
        self.resources = resources
        self.default_model = model
        self.usage = Usage()
        self.provenance = Provenance()
        """What text this task has seen and from where (for the taint policy)."""
        self.lookups: dict[tuple[str, str, str], Any] = {}
        """Trusted records the policy's rules looked up in this task (see ``guarded``)."""
        self._ahead: _Ahead | None = None
        self.vetted: set[str] = set()
        """Strings of the outcomes of sub-tasks that succeeded (``hand_over``): their
        agent's output tier redacted them already (see ``finish_output``)."""

    @property
    def principal(self) -> Principal | None:
        """Who this task is for (set at submission, or from the input's principal fields;
        known once the input was prepared)."""
        return self.provenance.identity

    # -- plain durable steps ----------------------------------------------------------
    @property
    def task_id(self) -> str:
        return self.durable.task_id

    async def step(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await self.durable.step(name, fn, *args, **kwargs)

    async def now(self) -> float:
        return await self.durable.now()

    async def random(self) -> float:
        return await self.durable.random()

    async def sleep(self, seconds: float) -> None:
        await self.durable.sleep(seconds)

    # -- model ------------------------------------------------------------------------------
    async def call_model(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[ToolSpec] = (),
        model: str | None = None,
        max_tokens: int = 1024,
        timeout: float | None = None,
        stream: bool = False,
        digest: str | None = None,
        response_format: ResponseFormat | None = None,
        on_text: Callable[[str], None] | None = None,
        reserve_next: bool = False,
        final_tools: Collection[str] = (),
    ) -> dict[str, Any]:
        """One journaled model call. Returns ``{content, tool_calls, model, usage, cost_usd,
        fallback_from}`` (tool calls as ``{id, name, arguments}``).

        ``stream``: the answer's text is published as it comes (``task.delta`` events, for
        ``GET /v1/tasks/{id}/events``), each delta naming the call's journal position
        (``seq``) and its character offset (``start``); the journal records the whole
        answer as without streaming.

        ``on_text``: each piece of the answer's text as it is generated, for a reader in
        this process (a framework's own token stream); the call is streamed from the model
        when its client can. Not called for an answer the journal gives back (a replay):
        the caller has the whole answer then, in the reply.

        ``digest`` (a caller's fingerprint of the request) is journaled with the reply and
        returned as ``request_digest``: on replay, the recorded one, so the caller can tell
        that a replayed call sent a different request (adapters raise
        :class:`~stalwart.errors.NonDeterminismError` then) at no extra journal write.

        ``response_format`` asks for structured output (the answer's ``content`` is then
        the JSON text).

        ``reserve_next`` (the agent loop): a reply that asks for tools will be followed by
        another model call, so its budget reservation is taken now, in the transaction
        that settles this one (when the spend ledger shares the store's database). On
        SQLite that commit is lazy; an ordinary commit of the task since (a side effect's
        ledger entry) or a sync of its commits (an fsync of the WAL, started while a tool
        without side effects runs, or when this call finds none) makes it durable before
        the next call is sent, which then needs no commit of its own (it reserves as
        usual when its prompt outgrew the reservation, or when the sync failed). On
        PostgreSQL it is an ordinary commit, durable at once.
        Call :meth:`release_ahead` when the loop ends. ``final_tools``: tools whose call
        ends the caller's loop (a framework's output tool): a reply calling one takes no
        reservation ahead, as one calling no tool takes none."""
        chain_name = model or self.default_model
        if chain_name is None or chain_name not in self.resources.models:
            raise ConfigError(f"agent {self.resources.agent!r} has no model chain {chain_name!r}")
        client = self.resources.models[chain_name]
        request = ModelRequest(
            messages=tuple(to_message(m) for m in messages),
            tools=tuple(tools),
            max_tokens=max_tokens,
            response_format=response_format,
        )

        reservation = None
        budget = self.resources.security.budget
        prompt = 0  # estimated only for what needs it: a rate limit or a budget
        if not self.durable.replaying and (
            self.resources.rate_limiters or (self.resources.ledger is not None and budget.limited)
        ):
            prompt = estimate_tokens(
                [dict(m) for m in messages], list(tools), bytes_per_token=budget.bytes_per_token
            )
        if not self.durable.replaying:  # a replayed call was limited and paid for already
            for key in ("*", chain_name):
                limiter = self.resources.rate_limiters.get(key)
                if limiter is not None:
                    rate = self.resources.security.rate
                    if key != "*":
                        rate = self.resources.security.model_rates.get(key)
                    wait = rate.max_wait_s if rate is not None else None
                    await limiter.acquire(prompt + max_tokens, max_wait=wait)
        # (left in self._ahead until it is used or replaced: a cancel or an error
        # meanwhile leaves it to release_ahead, as a loop that ends does)
        ahead = self._ahead
        names = _priced(client) if self.resources.ledger is not None and budget.limited else ()
        if self.resources.ledger is not None and budget.limited and not self.durable.replaying:
            # worst case before the call (fail closed)
            worst = max(self.resources.prices.worst_case(n, prompt, max_tokens) for n in names)
            if (
                ahead is not None
                and worst <= ahead.reservation.amount_usd
                and await self._made_durable(ahead)
            ):
                reservation = ahead.reservation  # taken with the last settle, and durable
            else:
                reservation = await self.resources.ledger.reserve(
                    budget,
                    agent=self.resources.agent,
                    task_id=self.task_id,
                    amount_usd=worst,
                    replacing=ahead.reservation if ahead is not None else None,
                )
        elif ahead is not None and self.resources.ledger is not None:
            await self.resources.ledger.settle(ahead.reservation, 0.0)
        if ahead is not None:
            ahead.drop_sync()
            self._ahead = None

        sent = False  # the request may have reached the provider (and been billed)
        seq = self.durable.position  # the journal position this call's step takes
        publish = self.resources.runtime.publish if self.resources.runtime else None

        async def call() -> dict[str, Any]:
            nonlocal sent
            sent = True
            to_callers = publish if stream else None
            if (to_callers or on_text) and isinstance(client, StreamingModelClient):
                response = await streamed(
                    client, request, timeout=timeout, publish=to_callers, task_id=self.task_id,
                    seq=seq, on_text=on_text,
                )  # fmt: skip
            else:
                response = await client.complete(request, timeout=timeout)
            return {
                "content": response.message.content,
                "tool_calls": [
                    {"id": c.id, "name": c.name, "arguments": c.arguments}
                    for c in response.message.tool_calls
                ],
                "model": response.model,
                "fallback_from": list(response.fallback_from),
                "usage": {
                    "prompt_tokens": response.usage.prompt_tokens,
                    "completion_tokens": response.usage.completion_tokens,
                },
                "cost_usd": response.cost_usd,
                **({"request_digest": digest} if digest is not None else {}),
            }

        ledger = self.resources.ledger
        # The settle joins the call's journal entry in one transaction when the ledger
        # lives in the store's database -- its SQLite file, or its PostgreSQL database,
        # where the transaction takes the ledger's advisory lock first and commits
        # synchronously (Store.joins_lazily) -- one commit per model step, not two. Safe:
        # both or neither commit. Neither (a crash before the commit) is the state of a
        # call that was never journaled: the task's process died, so the node charges
        # the reservation its worst case (charge_holder), and the resumed task calls
        # again under a new reservation, as it did when the crash came before the
        # journal commit. A settle raced by the cancel path below is not counted twice
        # (a settled reservation is gone, and settling it again adds nothing).
        joined = (
            reservation is not None and ledger is not None and self.durable.store.joins(ledger.url)
        )

        next_plan: Any = None  # the reservation taken ahead with the settle, if any

        def settle(reply: dict[str, Any]) -> Joined | None:
            nonlocal next_plan
            if not joined or reservation is None or ledger is None:
                return None
            tokens = int(reply["usage"]["prompt_tokens"]) + int(reply["usage"]["completion_tokens"])
            cost = float(reply["cost_usd"])
            calls = reply["tool_calls"]
            taking = reserve_next and RESERVE_AHEAD and bool(calls)
            if taking and not any(c["name"] in final_tools for c in calls):
                # the next prompt: this one, the reply, and room for the tools' results
                grown = (
                    prompt
                    + AHEAD_TOKENS
                    + estimate_tokens(
                        [assistant_message(reply)], bytes_per_token=budget.bytes_per_token
                    )
                )
                amount = max(self.resources.prices.worst_case(n, grown, max_tokens) for n in names)
                both, args, next_plan = ledger.settle_ahead_program(
                    reservation, cost, tokens, budget, agent=self.resources.agent,
                    task_id=self.task_id, amount_usd=amount,
                )  # fmt: skip
                return Joined(both, args, ledger.lock)
            fn, args = ledger.settle_program(reservation, cost, tokens)
            return Joined(fn, args, ledger.lock)

        try:
            reply: dict[str, Any]
            # redone if lost: the record is committed before the reply returns (a process
            # kill cannot lose it), and fsynced by the next ordinary commit -- before any
            # side effect, approval, sub-task or result can depend on it. An OS crash
            # before that loses only the reply, and the resumed task asks again.
            reply, ratios = await self.durable.step_joined(
                "model", call, settle, redone_if_lost=LAZY_MODEL_RECORDS
            )
        except asyncio.CancelledError:
            # Interrupted (the task was cancelled, or its process is stopping). A call
            # already sent may have been billed: charge its reserved worst case, as the
            # node charges a dead process's calls; one never sent is only released.
            if reservation is not None and self.resources.ledger is not None:
                charge = reservation.amount_usd if sent else 0.0
                settling = asyncio.ensure_future(self.resources.ledger.settle(reservation, charge))
                # Cancelled again meanwhile (a cancel stops a task twice when its lease's
                # refused renewal and the node's request race): the charge still lands
                # before the task ends, or the one who cancelled sees it still reserved.
                while not settling.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.shield(settling)
                settling.result()
            raise
        except BaseException:
            if reservation is not None and self.resources.ledger is not None:
                await self.resources.ledger.settle(reservation, 0.0)
            raise
        if reservation is not None and ledger is not None:
            if joined and next_plan is not None:  # committed with the journal entry
                taken = ledger.settled_ahead(reservation, next_plan, ratios)
                if taken is not None:
                    self._ahead = _Ahead(taken, self.durable.lazy_mark)
            elif joined:  # committed with the journal entry
                ledger.settled(reservation, ratios or [])
            else:
                tokens = int(reply["usage"]["prompt_tokens"]) + int(
                    reply["usage"]["completion_tokens"]
                )
                await ledger.settle(reservation, float(reply["cost_usd"]), tokens)
        self.usage.model_calls += 1
        self.usage.prompt_tokens += int(reply["usage"]["prompt_tokens"])
        self.usage.completion_tokens += int(reply["usage"]["completion_tokens"])
        self.usage.cost_usd += float(reply["cost_usd"])
        self.usage.fallbacks += 1 if reply["fallback_from"] else 0
        return reply

    async def _made_durable(self, ahead: _Ahead) -> bool:
        """Whether the reservation taken ahead is on disk now, made so if needed: by an
        ordinary commit of the task since it was taken, or by a sync of the task's
        commits -- the one started while a tool ran (call_tool), or one started now. A
        sync that fails answers False: the call reserves again, an ordinary commit that
        fails as any write of the store would."""
        syncing = ahead.sync_started(self.durable)
        if syncing is None:
            return True
        try:
            await syncing
        except StoreError:
            return False
        return ahead.is_durable(self.durable)

    async def release_ahead(self) -> None:
        """End a reservation taken ahead for a model call that will not come (the loop
        ended after tool calls: refused, out of steps, failed or cancelled)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.drop_sync()
        if ahead is None or self.resources.ledger is None:
            return
        # Released even when the task is cancelled again meanwhile (as a cancelled call's
        # charge is): left held, it would keep its room from other calls for an hour
        releasing = asyncio.ensure_future(self.resources.ledger.settle(ahead.reservation, 0.0))
        cancelled = False
        while not releasing.done():
            try:
                await asyncio.shield(releasing)
            except asyncio.CancelledError:
                cancelled = True
        releasing.result()
        if cancelled:  # the cancel still stops the task, once the room is given back
            raise asyncio.CancelledError

    # -- tools ------------------------------------------------------------------------------
    def tool_specs(self) -> list[ToolSpec]:
        return self.resources.tools.specs(self.resources.scopes)

    async def call_tool(
        self, name: str, arguments: Any, *, proposed: bool = False, call_id: str = ""
    ) -> ToolResult:
        """Authorize, then run ``name`` as a journaled step (or ledgered effect).

        A call the agent's scopes do not allow is refused here, by the runtime,
        and reported to the model as ``denied``; it is logged and counted.
        ``proposed=True`` (the LLM loop) says the model chose the call: a
        sensitive tool is then also checked against the taint policy and held
        for approval (or refused) when its arguments come from untrusted text.
        ``call_id`` is the model's id for the call (``gen_ai.tool.call.id``).

        The call is an ``execute_tool`` span, and a call that runs (not one
        replayed from the journal) logs one ``tool_call`` line: ``tool``,
        ``call_id``, ``outcome`` (the result's status), ``latency_ms``.
        """
        replayed = self.durable.replaying
        started = time.perf_counter()
        attributes: dict[str, AttrValue] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "stalwart.replayed": replayed,
        }
        if call_id:
            attributes["gen_ai.tool.call.id"] = call_id
        outcome = "error"
        try:
            with start_span(f"execute_tool {name}", attributes) as span:
                result = await self._call_tool(name, arguments, proposed=proposed)
                outcome = result.status
                set_span_attributes(span, {"stalwart.tool.status": result.status})
                if not result.ok:
                    set_span_error(span, result.status, result.error)
                return result
        finally:
            if not replayed:
                _log.log(
                    logging.INFO if outcome == "ok" else logging.WARNING,
                    "tool_call",
                    tool=name,
                    call_id=call_id or None,
                    outcome=outcome,
                    latency_ms=round((time.perf_counter() - started) * 1000, 3),
                )

    async def _call_tool(self, name: str, arguments: Any, *, proposed: bool) -> ToolResult:
        res = self.resources
        self.usage.tool_calls += 1
        why = res.tools.authorize(name, res.scopes)
        if why is not None:
            self.usage.denied_tool_calls += 1
            res.events.emit(
                "tool_call_denied", agent=res.agent, task_id=self.task_id, tool=name, reason=why
            )
            return ToolResult(name, "denied", error=f"not allowed: {why}")
        tool = res.tools[name]
        if proposed and isinstance(arguments, dict):
            held = await guarded(self, name, arguments, side_effect=tool.side_effect)
            if held is not None:
                return held
        events = res.events
        breakers = res.tools.breakers
        if tool.side_effect:

            async def effect(args: Any, *, idempotency_key: str) -> dict[str, Any]:
                result = await tool.invoke(
                    args, idempotency_key=idempotency_key, events=events, breakers=breakers
                )
                return result.as_data()

            async def reconcile(key: str) -> dict[str, Any]:
                assert tool.reconcile is not None
                return {"status": "ok", "tool": name, "value": tool.reconcile(key)}

            try:
                raw = await self.durable.effect(
                    f"tool:{name}",
                    effect,
                    arguments,
                    deduplicated=tool.deduplicates,
                    # without a hook nobody can tell: the ledger records the outcome
                    # unknown, and the task's result says so (flag_unknown_effects)
                    reconcile=reconcile if tool.reconcile is not None else None,
                )
            except OutcomeUnknown:  # tell the model; the task's result carries the flag
                return ToolResult(
                    name, "error",
                    error=f"the outcome of {name} is unknown (the agent stopped mid-call); "
                    "it was not repeated to avoid a duplicate",
                )  # fmt: skip
            except StoreError:
                # The ledger could not record the call (the store is down or full, or the
                # lease is gone): the task's own durability failed, not the tool. Told to
                # the model as a tool error, the run went on without its record (a model
                # then answered "Refunded" for a refund the ledger never saw; verify's
                # LC-2 on a full disk); raised, the task stops and is retried, and the
                # ledger's record of a started call decides on resume.
                raise
            except StalwartError as exc:
                return ToolResult(name, "error", error=str(exc))
        else:

            async def run() -> dict[str, Any]:
                result = await tool.invoke(arguments, events=events, breakers=breakers)
                return result.as_data()

            # A tool without side effects is redone if its record is lost, as a model call
            # is (LAZY_MODEL_RECORDS): nothing outside the task depends on its result before
            # the next ordinary commit, which fsyncs the record with its own. A reservation
            # taken ahead (call_model's reserve_next) must be on disk before the next model
            # call is sent: a sync of the task's commits starts now and runs while the tool
            # does, and that call waits for it. (Before 2026-12-07 this record was then an
            # ordinary commit: its fsync in the loop's path, not beside the tool.)
            if self._ahead is not None:
                self._ahead.sync_started(self.durable)
            raw, _ = await self.durable.step_joined(
                f"tool:{name}", run, None, redone_if_lost=LAZY_MODEL_RECORDS
            )
        result = msgspec.convert(raw, ToolResult)
        origin = res.security.taint.origin_of_result(name)
        flagged = self.provenance.flagged
        self.provenance.add_result(
            name,
            result.value if result.ok else result.error,
            origin=origin,
            key=arguments if isinstance(arguments, dict) else {"input": arguments},
        )
        if self.provenance.flagged > flagged:  # a second signal: logged and counted, no more
            res.events.emit(
                "injection_suspected", agent=res.agent, task_id=self.task_id, tool=name,
                origin=str(origin), segments=self.provenance.flagged - flagged,
            )  # fmt: skip
        return result

    # -- other agents -------------------------------------------------------------------------
    async def call_agent(
        self, name: str, payload: Any, *, timeout: float, retry: bool = False
    ) -> Any:
        """Call another agent through the node (message passing, with a deadline), journaled.

        A slow callee raises (as :class:`~stalwart.errors.StepFailed`) at ``timeout``;
        a dead or unknown one at once, unless ``retry`` asks to wait, within the
        deadline, for a callee that its supervisor is restarting.
        """
        return await call_peer(self, name, payload, timeout=timeout, retry=retry)

    async def hand_over(self, name: str, task_input: Any, *, timeout: float) -> Any:
        """Give ``name`` a sub-task and wait for its outcome (``{task_id, status, result}``).

        The sub-task's id is derived from this task and this step, so after a
        resume the same sub-task is found, never created twice. It carries this
        task's principal (:attr:`principal`), if it has one.
        """
        return await hand_over_to(self, name, task_input, timeout=timeout)


def _priced(client: ModelClient) -> tuple[str, ...]:
    """The models a call on ``client`` may be billed for (a chain's every model, as its
    fallbacks may answer): the worst case of a reservation is the dearest of them."""
    if isinstance(client, FallbackChain):
        return client.names
    return (client.name,)
