"""Budgets that fail closed: reserve the worst case before a model call, settle after.

Limits apply per task, per agent per UTC day, and per UTC day for everything
sharing the ledger. Before each model call the worst-case cost (its prompt
plus ``max_tokens`` of answer) is reserved against every applicable limit in
one exclusive transaction; if any limit could be crossed nothing is
reserved and :class:`~stalwart.errors.BudgetExceeded` is raised: the call is
not made. After the call the reservation is replaced by the actual cost.
Because checking and reserving are one serialized transaction (the SQLite
file's write lock; an advisory lock on PostgreSQL), tasks racing for the last
dollar — in one process, many, or many nodes — never spend more
than the limit (as long as providers bill no more than the worst case).

Alerts: a ``budget_warning`` event when spend reaches ``warn_at`` of a limit
(default 80%), ``budget_exceeded`` when a call is refused, and the
``stalwart_budget_used_ratio{scope}`` gauge that the ``BudgetLimit`` alert
rule reads (warning at 0.8, critical at 1.0). The gauge shows the ratio of the
counter settled last; after a refusal it reads 1 for ``refusal_hold_s`` (default
10 s) whatever settles meanwhile. Without the hold, a cheaper task settling a
moment after another was refused would lower it before an alert evaluator
sampling every few seconds (5 s by default) saw the refusal.

A process that dies mid-call leaves its reservation behind, and whether the
provider billed the call is unknown. Each ledger may name its ``holder`` (an
agent's is ``<node id>/<pid>``), recorded in its reservations; the node that saw
the agent exit calls :meth:`SpendLedger.charge_holder`, which charges those calls
their worst case as spent (fail closed: never under-count) and ends the
reservations, so they stop holding room. A reservation whose holder is never
charged (its whole node died too) is ignored after ``stale_after`` seconds
(default one hour, far past any model deadline), at the ledger's next reconcile
(within :attr:`SpendLedger.RECONCILE_S`, a minute, more).

What live reservations hold of each agent's and day's counter is kept beside
them (table ``guard_held``, kept by the database's triggers as reservation rows
come and go: ``stalwart.guard._db``), so a check reads two rows per counter
however many calls are in flight; it summed every live reservation of the
counter before, which grew with them (``bench/ledger.py``). A task's counter is
summed from its own rows (a call or two). A reconcile now and then counts the
kept counters again from the rows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Literal

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.db import Program
from stalwart.errors import BudgetExceeded, ConfigError
from stalwart.guard._db import connect
from stalwart.observe import EventBus, catalog

__all__ = ["Budget", "Reservation", "SpendLedger", "estimate_tokens"]


@dataclasses.dataclass(frozen=True, slots=True)
class Budget:
    """Spend limits in US dollars (None: no limit at that scope)."""

    task_usd: float | None = None
    """One task, over its whole life (resumes included)."""
    agent_usd: float | None = None
    """One agent, per UTC day."""
    day_usd: float | None = None
    """Everything sharing the ledger, per UTC day."""
    warn_at: float = 0.8
    """Share of a limit at which the warning fires."""
    ledger: str | None = None
    """Ledger database URL; None: the app's store (``sqlite:///…``)."""
    bytes_per_token: float = 1.0
    """How the prompt's worst case is estimated (see :func:`estimate_tokens`): 1.0 never
    undercounts; 3.0-4.0 fits English and reserves less, at a small risk of overshoot."""
    wait_s: float = 10.0
    """How long a call waits for *other calls' reservations* to settle when only they
    stand in the way (settled spend alone leaves room); 0: refuse at once."""

    def __post_init__(self) -> None:
        for name in ("task_usd", "agent_usd", "day_usd"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"Budget.{name} must be >= 0, got {value}")
        if not 0.5 <= self.bytes_per_token <= 8:
            raise ConfigError(
                f"Budget.bytes_per_token must be in [0.5, 8], got {self.bytes_per_token}"
            )
        if self.wait_s < 0:
            raise ConfigError(f"Budget.wait_s must be >= 0, got {self.wait_s}")
        if not 0 < self.warn_at <= 1:
            raise ConfigError(f"Budget.warn_at must be in (0, 1], got {self.warn_at}")

    @property
    def limited(self) -> bool:
        """Whether any limit is set (no ledger work otherwise)."""
        return any(v is not None for v in (self.task_usd, self.agent_usd, self.day_usd))


def estimate_tokens(messages: Any, tools: Any = (), *, bytes_per_token: float = 1.0) -> int:
    """An upper bound of a prompt's tokens: its UTF-8 JSON bytes (tool schemas included)
    over ``bytes_per_token``, plus per-message overhead.

    With the default 1.0 it is a hard bound for byte-level BPE tokenizers (tiktoken's and
    most providers'): no token is shorter than one byte. English averages about 4 bytes a
    token, so a larger value reserves less but may undercount unusual text."""
    import msgspec

    size = len(msgspec.json.encode(messages)) + (len(msgspec.json.encode(tools)) if tools else 0)
    count = len(messages) if isinstance(messages, list | tuple) else 1
    return math.ceil(size / bytes_per_token) + 8 * count + 16


@dataclasses.dataclass(frozen=True, slots=True)
class Reservation:
    """Budget taken for one model call against each limit (scope, key, period, limit)."""

    id: str
    amount_usd: float
    limits: tuple[tuple[str, str, str, float], ...]  # scope, key, period, limit
    warn_at: float = 0.8


class SpendLedger:
    """The spend tables (see the module docstring); thread- and process-safe."""

    RECONCILE_S = 60.0
    """How often (at most) a ledger reconciles the held counters with a reservation (see
    ``_reconcile``): a reservation older than ``stale_after`` stops counting within this
    much more, and any drift of a counter lasts no longer."""

    REFUSAL_HOLD_S = 10.0
    """How long the scope's gauge reads 1 after a refusal (the ``refusal_hold_s`` default):
    twice the alert evaluator's default interval, so at least one evaluation sees it."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock = SYSTEM_CLOCK,
        events: EventBus | None = None,
        stale_after: float = 3600.0,
        refusal_hold_s: float = REFUSAL_HOLD_S,
        holder: str | None = None,
    ) -> None:
        if refusal_hold_s < 0:
            raise ConfigError(f"refusal_hold_s must be >= 0, got {refusal_hold_s}")
        if holder is not None and (not holder or "|" in holder):
            raise ConfigError(f"a ledger holder must be non-empty without '|', got {holder!r}")
        self.holder = holder
        """Who this ledger's reservations belong to (see :meth:`charge_holder`)."""
        self.url = url
        self.clock = clock
        self.events = events
        self.stale_after = stale_after
        self.refusal_hold_s = refusal_hold_s
        self._refused_at: dict[str, float] = {}  # scope -> clock.monotonic() of its last refusal
        self._conn = connect(url)
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str, str]] = set()
        self._reconciled_at: float | None = None  # clock.monotonic() of the last reconcile

    def _reconcile_due(self) -> bool:
        """Whether the reservation being planned reconciles first (the first of this
        ledger's, then one every :attr:`RECONCILE_S`). Marked as planned: a transaction
        that fails leaves the next reconcile to the next interval."""
        now = self.clock.monotonic()
        with self._lock:
            if self._reconciled_at is not None and now - self._reconciled_at < self.RECONCILE_S:
                return False
            self._reconciled_at = now
            return True

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @property
    def lock(self) -> int:
        """The advisory lock id that serializes reservations and settles on PostgreSQL:
        a caller committing :meth:`settle_program` or :meth:`settle_ahead_program` in a
        transaction of its own holds it there (taken before any row lock)."""
        return self._conn.lock

    def period(self) -> str:
        """Today's UTC date on the ledger's clock (the per-day counters' key)."""
        return time.strftime("%Y-%m-%d", time.gmtime(self.clock.time()))

    def _limits(
        self, budget: Budget, agent: str, task_id: str
    ) -> tuple[tuple[str, str, str, float], ...]:
        day = self.period()
        out = []
        if budget.task_usd is not None:
            out.append(("task", task_id, "", budget.task_usd))
        if budget.agent_usd is not None:
            out.append(("agent", agent, day, budget.agent_usd))
        if budget.day_usd is not None:
            out.append(("day", "*", day, budget.day_usd))
        return tuple(out)

    # -- the protocol ---------------------------------------------------------------------------
    def reserve_sync(
        self, budget: Budget, *, agent: str, task_id: str, amount_usd: float, final: bool = True
    ) -> Reservation | None:
        """Take ``amount_usd`` against every limit, or raise :class:`BudgetExceeded`.

        With ``final=False``, a refusal caused only by other calls' reservations
        returns None instead (the caller may wait for them to settle)."""
        plan = self._reserve_plan(budget, agent, task_id, amount_usd, final)
        refused = self._conn.run(_reserve, *plan.args, exclusive=True)
        return self._reserved(plan, refused, agent, task_id)

    def _reserve_plan(
        self, budget: Budget, agent: str, task_id: str, amount_usd: float, final: bool
    ) -> _ReservePlan:
        limits = self._limits(budget, agent, task_id)
        rid = uuid.uuid4().hex if self.holder is None else f"{self.holder}|{uuid.uuid4().hex}"
        now = self.clock.time()
        rows = [(f"{rid}:{s}", s, k, p, amount_usd, now) for s, k, p, _ in limits]
        check = _Check(amount_usd, now - self.stale_after, final, self._reconcile_due())
        args = (limits, rows, check)
        return _ReservePlan(rid, amount_usd, limits, budget.warn_at, args)

    def _reserved(
        self,
        plan: _ReservePlan,
        refused: tuple[str, float, float] | Literal["wait"] | None,
        agent: str,
        task_id: str,
    ) -> Reservation | None:
        """What the reservation program's answer means: the reservation, None (wait), or
        :class:`BudgetExceeded` raised (announced and shown on the gauge)."""
        if refused == "wait":
            return None  # only in-flight reservations stand in the way: wait
        if refused is not None:
            scope, limit, used = refused
            self._refused_at[scope] = self.clock.monotonic()
            self._show(scope, 1.0)
            if self.events is not None:
                self.events.emit(
                    "budget_exceeded", severity="critical", scope=scope, agent=agent,
                    task_id=task_id, limit_usd=limit, used_usd=round(used, 6),
                    needed_usd=round(plan.amount_usd, 6),
                )  # fmt: skip
            raise BudgetExceeded(
                f"the {scope} budget of ${limit:g} could be crossed by this model call "
                f"(used ${used:.4f}, worst case ${plan.amount_usd:.4f}); the call was not made",
                limit_scope=scope,
                limit_usd=limit,
                spent_usd=used,
            )
        return Reservation(plan.rid, plan.amount_usd, plan.limits, plan.warn_at)

    def settle_sync(self, reservation: Reservation, actual_usd: float, tokens: int = 0) -> None:
        """Replace the reservation by what the call cost (0 if it failed before billing).

        Settling is idempotent: a reservation already settled (or charged to its dead
        holder) is not counted again."""
        fn, args = self.settle_program(reservation, actual_usd, tokens)
        self.settled(reservation, self._conn.run(fn, *args, exclusive=True))

    def settle_program(
        self, reservation: Reservation, actual_usd: float, tokens: int = 0
    ) -> tuple[Callable[..., Program[Ratios]], tuple[Any, ...]]:
        """The settle as a kernel program and its arguments, for a caller that commits it
        inside a transaction of its own on this ledger's database (the agent joins it to
        the model call's journal entry), holding :attr:`lock` there; pass what it
        returns to :meth:`settled`. Its commit may be asynchronous only where the
        database cannot lose it while the caller lives on (SQLite); on PostgreSQL it is
        synchronous, as the ledger's own (``docs/security.md``, *Budgets*)."""
        since = self.clock.time() - self.stale_after
        args = (reservation.id, reservation.limits, actual_usd, tokens, since)
        return _settle, args

    def settle_ahead_program(
        self,
        reservation: Reservation,
        actual_usd: float,
        tokens: int,
        budget: Budget,
        *,
        agent: str,
        task_id: str,
        amount_usd: float,
    ) -> tuple[Callable[..., Program[tuple[Ratios, Any]]], tuple[Any, ...], _ReservePlan]:
        """:meth:`settle_program`, then a reservation of ``amount_usd`` for the caller's
        next call taken in the same transaction (never raising, never waiting: a refusal
        takes nothing, and the next call reserves on its own as usual). Give what the
        program returns to :meth:`settled_ahead`.

        For a caller that knows its next call comes soon and commits the settle anyway:
        the agent loop, whose model step is followed by tool calls and another model
        call. The reservation rides on a commit that is made regardless, so the next call
        needs none of its own once an ordinary commit has made this one durable."""
        fn, settle_args = self.settle_program(reservation, actual_usd, tokens)
        plan = self._reserve_plan(budget, agent, task_id, amount_usd, final=False)
        return _settle_then_reserve, (fn, settle_args, plan.args), plan

    def settled_ahead(
        self, reservation: Reservation, plan: _ReservePlan, value: tuple[Ratios, Any]
    ) -> Reservation | None:
        """Report the settle of :meth:`settle_ahead_program`; the reservation it took
        ahead, or None when the limits left no room for it then."""
        ratios, refused = value
        self.settled(reservation, ratios)
        if refused is not None:
            return None
        return Reservation(plan.rid, plan.amount_usd, plan.limits, plan.warn_at)

    def settled(self, reservation: Reservation, ratios: Ratios) -> None:
        """Report a settle that committed (gauges, ``budget_warning``)."""
        self._report(ratios, reservation)

    def _report(self, ratios: list[tuple[str, str, str, float]], res: Reservation) -> None:
        warn_at = res.warn_at
        for scope, key, period, ratio in ratios:
            self._show(scope, ratio)
            mark = (scope, key, period)
            if ratio >= warn_at and mark not in self._warned:
                self._warned.add(mark)
                if self.events is not None:
                    self.events.emit(
                        "budget_warning", severity="warning", scope=scope,
                        key=key if scope != "task" else key[:64], ratio=round(ratio, 4),
                    )  # fmt: skip

    def charge_holder(self, holder: str) -> tuple[int, float]:
        """Charge every call ``holder`` left in flight its worst case; end its reservations.

        For a holder known to be dead (the node calls it when an agent process exits):
        its calls will never settle, and the provider may have billed them, so their
        reserved worst case becomes spend on every counter it was held against
        (failing closed: a budget never under-counts), and stops counting as
        reserved. Returns the number of calls charged and their dollars.
        """
        prefix = f"{holder}|"
        now = self.clock.time()
        rows = self._conn.run(_charge, prefix, now - self.stale_after, exclusive=True)
        calls = {str(r[0]).rsplit(":", 1)[0]: float(r[4]) for r in rows}
        return len(calls), sum(calls.values())

    def _show(self, scope: str, ratio: float) -> None:
        """Point the scope's gauge at ``ratio``, held at 1 while a refusal is recent.

        A function gauge, read at each scrape or shipment: the hold ends on time, with
        no later settle needed to lower the gauge."""
        refused_at = self._refused_at.get(scope)
        clock, hold, value = self.clock, self.refusal_hold_s, min(ratio, 1.0)

        def current() -> float:
            if refused_at is not None and clock.monotonic() - refused_at < hold:
                return 1.0
            return value

        catalog.BUDGET_USED_RATIO.labels(scope).set_function(current)

    def add_spent(
        self, scope: str, key: str, amount_usd: float, *, period: str | None = None
    ) -> float:
        """Add ``amount_usd`` to one counter's settled spend; returns the counter's new value.

        For spend made outside this ledger's reservations -- carried over from another
        ledger, or seeded by ``stalwart verify`` to bring a limit within reach of a few
        real calls. A negative amount takes spend back (never below zero). No event is
        emitted and the gauge is left alone: no model call happened. ``scope`` is
        ``task`` (``key``: the task id), ``agent`` (the agent's name) or ``day``
        (``key`` ``*``); ``period`` defaults to today (``""`` for a task).
        """
        if scope not in ("task", "agent", "day"):
            raise ConfigError(f"budget scope must be 'task', 'agent' or 'day', got {scope!r}")
        if not math.isfinite(amount_usd):
            raise ConfigError(f"spend must be a finite amount, got {amount_usd!r}")
        day = ("" if scope == "task" else self.period()) if period is None else period
        total: float = self._conn.run(_set_spent, scope, key, day, amount_usd, exclusive=True)
        return total

    def reserved(self, scope: str, key: str, period: str | None = None) -> float:
        """What in-flight calls hold of one counter: reservations younger than
        ``stale_after`` (a killed process's, until its holder is charged)."""
        day = ("" if scope == "task" else self.period()) if period is None else period
        since = self.clock.time() - self.stale_after
        held: float = self._conn.run(_held_rows, scope, key, day, since)
        return held

    def spent(self, scope: str, key: str, period: str | None = None) -> float:
        """Settled spend of one counter (``period`` defaults to today, or ``""`` for tasks)."""
        day = ("" if scope == "task" else self.period()) if period is None else period
        spent: float = self._conn.run(_spent, scope, key, day)
        return spent

    # -- async wrappers ----------------------------------------------------------------------------
    async def reserve(
        self,
        budget: Budget,
        *,
        agent: str,
        task_id: str,
        amount_usd: float,
        replacing: Reservation | None = None,
    ) -> Reservation:
        """:meth:`reserve_sync` off the event loop, waiting up to ``budget.wait_s`` (real
        time) while only in-flight reservations of other calls stand in the way.

        ``replacing``: a reservation taken ahead (:meth:`settle_ahead_program`) that does
        not fit this call; it is ended in the same transaction as the first attempt.

        (Through the agent's store, on its loop, instead of a worker thread: no faster
        here. Interleaved in one process, 10 blocks of 30 tasks each way, that path gave
        20-24 ms per task against 17-19 ms, mean, at load average 7, 2026-12-06.)"""
        deadline = time.monotonic() + budget.wait_s
        pause = 0.01
        while True:
            final = time.monotonic() >= deadline
            if replacing is not None:
                plan = self._reserve_plan(budget, agent, task_id, amount_usd, final)
                ended = _row_ids(replacing.id, replacing.limits)
                refused = await asyncio.to_thread(
                    self._conn.run, _end_then_reserve, ended, *plan.args, exclusive=True
                )
                replacing = None  # ended with the first attempt, whatever its answer
                got = self._reserved(plan, refused, agent, task_id)
            else:
                got = await asyncio.to_thread(
                    self.reserve_sync, budget, agent=agent, task_id=task_id,
                    amount_usd=amount_usd, final=final,
                )  # fmt: skip
            if got is not None:
                return got
            await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 0.2)

    async def settle(self, reservation: Reservation, actual_usd: float, tokens: int = 0) -> None:
        """:meth:`settle_sync` off the event loop."""
        await asyncio.to_thread(self.settle_sync, reservation, actual_usd, tokens)


# -- the ledger's operations, written once for both dialects (kernel programs) ---------------------
_SPENT = "SELECT spent_usd FROM guard_spend WHERE scope=? AND key=? AND period=?"
# What live reservations hold of an agent's or the day's counter, as a reservation's
# check reads it: the counter kept beside the rows (guard_held), not a SUM over them
_HELD = "SELECT held_usd FROM guard_held WHERE scope=? AND key=? AND period=?"
# ... and summed from the rows: a task's counter (a call or two of its own in flight), and
# any counter for reserved() (exact to stale_after, read rarely)
_HELD_ROWS = (
    "SELECT COALESCE(SUM(amount_usd), 0) FROM guard_reservations "
    "WHERE scope=? AND key=? AND period=? AND created > ?"
)
# the reconcile: stale reservations stop counting, and every counter is counted again
# (a stale reservation's created is negated: see stalwart.guard._db, _V2)
_SWEEP = "UPDATE guard_reservations SET created = -created WHERE created > 0 AND created <= ?"
_CLEAR_HELD = "DELETE FROM guard_held"
_COUNT_HELD = (
    "INSERT INTO guard_held (scope, key, period, held_usd) "
    "SELECT scope, key, period, SUM(amount_usd) FROM guard_reservations "
    "WHERE created > 0 AND scope <> 'task' GROUP BY scope, key, period"
)
_ADD_ON_CONFLICT = (
    " ON CONFLICT (scope, key, period) DO UPDATE SET "
    "spent_usd = guard_spend.spent_usd + excluded.spent_usd, "
    "tokens = guard_spend.tokens + excluded.tokens"
)
_ADD_SPEND = (
    "INSERT INTO guard_spend (scope, key, period, spent_usd, tokens) VALUES (?, ?, ?, ?, ?)"
    + _ADD_ON_CONFLICT
)
_SET_SPEND = (
    "INSERT INTO guard_spend (scope, key, period, spent_usd, tokens) "
    "VALUES (?, ?, ?, ?, 0) ON CONFLICT (scope, key, period) DO UPDATE SET "
    "spent_usd = excluded.spent_usd"
)
# Every counter's settled spend and what live reservations hold of it, in one statement;
# a settle's new spend of every counter from one upsert (RETURNING); a reservation's rows
# in one INSERT. A reservation and a settle against three limits were 19 statements a
# model call (each a round trip inside the transaction on PostgreSQL, and CPU of the
# thread that commits on SQLite), then 8, now 4. A settle with the next call's
# reservation, in a transaction of its own on PostgreSQL on loopback: 1.75-1.98 ms before,
# 1.34-1.37 ms after (medians of 500, interleaved runs, 2026-12-07); on SQLite no change
# stood out of the noise (the work is the rows and their index, not the statements).


@functools.lru_cache(maxsize=8)
def _used_of(scopes: tuple[str, ...]) -> str:
    """One row: for each counter of ``scopes``, its settled spend, then what live
    reservations hold of it (parameters: scope, key, period twice, each, and ``since``
    after a task's): two primary-key reads for an agent's or the day's counter, however
    many calls are in flight; a task's own rows for a task's."""
    return "SELECT " + ", ".join(
        f"({_SPENT}), ({_HELD_ROWS if scope == 'task' else _HELD})" for scope in scopes
    )


@functools.lru_cache(maxsize=8)
def _add_spend_of(count: int) -> str:
    """The upsert of ``count`` counters' spend (distinct counters: PostgreSQL refuses an
    upsert that updates one row twice), answering each counter's new spend."""
    return (
        "INSERT INTO guard_spend (scope, key, period, spent_usd, tokens) VALUES "
        + ", ".join(["(?, ?, ?, ?, ?)"] * count)
        + _ADD_ON_CONFLICT
        + " RETURNING scope, key, period, spent_usd"
    )


@functools.lru_cache(maxsize=8)
def _reserve_rows(count: int) -> str:
    """The INSERT of ``count`` reservation rows."""
    return (
        "INSERT INTO guard_reservations (id, scope, key, period, amount_usd, created) "
        "VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?)"] * count)
    )


# substr, not LIKE: a holder (a node id) may contain LIKE's wildcards '_' and '%'
_END = "DELETE FROM guard_reservations WHERE substr(id, 1, ?) = ?"


@functools.lru_cache(maxsize=8)
def _end_rows(count: int) -> str:
    """The DELETE of ``count`` reservation rows by their ids (the primary key).

    A settle ends its reservation's rows by id, not by their id's prefix as a dead
    holder's charge does (:data:`_END`): ``substr(id, ...)`` reads every live reservation
    of the ledger, and a node with many calls in flight holds many. SQLite, in memory,
    one reservation's three rows ended: 95 against 29 us with 200 live rows, 234 against
    41 us with 600 (2026-12-07); a node with 1,000 tasks in flight holds about 3,000."""
    return "DELETE FROM guard_reservations WHERE id IN (" + ", ".join(["?"] * count) + ")"


def _row_ids(rid: str, limits: Limits) -> tuple[str, ...]:
    """The ids of reservation ``rid``'s rows, one per limit (as :meth:`SpendLedger.
    _reserve_plan` writes them)."""
    return tuple(f"{rid}:{scope}" for scope, _key, _period, _limit in limits)


_HELD_BY = (
    "SELECT id, scope, key, period, amount_usd FROM guard_reservations "
    "WHERE substr(id, 1, ?) = ? AND created > ?"
)
Limits = tuple[tuple[str, str, str, float], ...]
Ratios = list[tuple[str, str, str, float]]


@dataclasses.dataclass(frozen=True, slots=True)
class _Check:
    """How a reservation is checked: its ``amount``; reservations created before
    ``since`` no longer count (stale); ``final``: refuse rather than answer "wait";
    ``reconcile``: :func:`_reconcile` first."""

    amount: float
    since: float
    final: bool
    reconcile: bool


@dataclasses.dataclass(frozen=True, slots=True)
class _ReservePlan:
    """A reservation about to be taken: its id, amount, limits, and the program's args."""

    rid: str
    amount_usd: float
    limits: Limits
    warn_at: float
    args: tuple[Any, ...]


def _used(
    counters: Sequence[tuple[str, str, str]], since: float
) -> Program[list[tuple[float, float]]]:
    """Each counter's (scope, key, period) settled spend and what live reservations hold
    of it (a task's: those created after ``since``), in one statement."""
    params: list[Any] = []
    for scope, key, period in counters:
        params += (scope, key, period, scope, key, period)
        if scope == "task":
            params.append(since)
    scopes = tuple(scope for scope, _key, _period in counters)
    row = (yield (_used_of(scopes), tuple(params))).one()
    assert row is not None  # a SELECT of subqueries answers one row (NULL: no spend yet)
    return [(float(row[2 * i] or 0.0), float(row[2 * i + 1] or 0.0)) for i in range(len(counters))]


def _reconcile(since: float) -> Program[None]:
    """Reservations older than ``since`` stop counting (their holder never settled them
    and was never charged: its whole node died), and every kept counter's held amount
    is counted again from the live rows.

    A ledger runs it with a reservation now and then (:attr:`SpendLedger.RECONCILE_S`),
    not with each: it reads every live reservation, which is what the kept counters
    spare each check. The recount also ends the drift of a counter's float sum of
    additions and subtractions (bounded by a few ulps per change meanwhile)."""
    yield (_SWEEP, (since,))
    yield (_CLEAR_HELD, ())
    yield (_COUNT_HELD, ())


def _end(ids: tuple[str, ...]) -> Program[int]:
    """Delete reservation rows by id (their counters follow: the guard_held triggers);
    how many were there."""
    return int((yield (_end_rows(len(ids)), ids)).rowcount)


def _reserve(
    limits: Limits, rows: list[tuple[Any, ...]], check: _Check
) -> Program[tuple[str, float, float] | Literal["wait"] | None]:
    """Check every limit and reserve against all, or none: None when reserved, the
    refused ``(scope, limit, used)``, or "wait" (only reservations of other calls
    stand in the way, and ``check.final`` is off)."""
    if check.reconcile:
        yield from _reconcile(check.since)
    amount = check.amount
    if limits:
        counters = [(scope, key, period) for scope, key, period, _ in limits]
        used = yield from _used(counters, check.since)
        for (scope, _key, _period, limit), (spent, held) in zip(limits, used, strict=True):
            if spent + held + amount > limit + 1e-12:
                if not check.final and spent + amount <= limit + 1e-12:
                    return "wait"
                return (scope, limit, spent + held)
    if rows:
        yield (_reserve_rows(len(rows)), tuple(v for row in rows for v in row))
    return None


def _settle(rid: str, limits: Limits, usd: float, tokens: int, since: float) -> Program[Ratios]:
    """Replace a reservation by the actual cost; the counters' new ratios. A reservation
    no longer there (settled already, or charged to its dead holder) adds nothing: a
    settle that raced a cancel's charge never counts the call twice."""
    if not limits:  # a reservation under no limit wrote no rows
        return []
    if (yield from _end(_row_ids(rid, limits))) == 0:
        return []
    params = tuple(v for scope, key, period, _ in limits for v in (scope, key, period, usd, tokens))
    # RETURNING's rows come in no promised order: matched to the limits by their key
    spent = {
        (str(r[0]), str(r[1]), str(r[2])): float(r[3])
        for r in (yield (_add_spend_of(len(limits)), params)).rows
    }
    return [
        (scope, key, period, spent[scope, key, period] / limit if limit > 0 else 1.0)
        for scope, key, period, limit in limits
    ]


def _settle_then_reserve(
    settle: Callable[..., Program[Ratios]],
    settle_args: tuple[Any, ...],
    reserve_args: tuple[Any, ...],
) -> Program[tuple[Ratios, tuple[str, float, float] | Literal["wait"] | None]]:
    """A settle and a reservation (for the next call) in one transaction. A reservation
    found gone (a cancelled call's charge settled it first: the task is stopping) takes
    nothing ahead, which no next call would ever settle."""
    ratios = yield from settle(*settle_args)
    if not ratios and settle_args[1]:  # limits, and no ratios: the reservation was gone
        return ratios, "wait"
    refused = yield from _reserve(*reserve_args)
    return ratios, refused


def _end_then_reserve(
    ended: tuple[str, ...], *reserve_args: Any
) -> Program[tuple[str, float, float] | Literal["wait"] | None]:
    """End the reservation whose rows are ``ended`` (their ids) and take another, in one
    transaction."""
    if ended:
        yield from _end(ended)
    return (yield from _reserve(*reserve_args))


def _charge(prefix: str, since: float) -> Program[list[tuple[Any, ...]]]:
    """Charge a dead holder's live reservations as spent; end all of its reservations."""
    rows = (yield (_HELD_BY, (len(prefix), prefix, since))).rows
    for _id, scope, key, period, amount in rows:
        yield (_ADD_SPEND, (str(scope), str(key), str(period), float(amount), 0))
    yield (_END, (len(prefix), prefix))
    return rows


def _held_rows(scope: str, key: str, period: str, since: float) -> Program[float]:
    """What live reservations younger than ``since`` hold of one counter, from the rows."""
    row = (yield (_HELD_ROWS, (scope, key, period, since))).one()
    return float(row[0] or 0.0) if row else 0.0


def _spent(scope: str, key: str, period: str) -> Program[float]:
    row = (yield (_SPENT, (scope, key, period))).one()
    return float(row[0] or 0.0) if row else 0.0


def _set_spent(scope: str, key: str, period: str, amount: float) -> Program[float]:
    row = (yield (_SPENT, (scope, key, period))).one()
    total = max(0.0, (float(row[0]) if row else 0.0) + amount)
    yield (_SET_SPEND, (scope, key, period, total))
    return total
