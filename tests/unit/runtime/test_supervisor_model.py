"""The supervisor against a small reference model of OTP's supervisor rules.

A hypothesis state machine drives a real :class:`Supervisor` (its restart
logic, strategies, intensity and operator API) over a fake process host, with
an injected clock: child crashes (abnormal, ``normal``, ``shutdown``), starts
that fail a given number of times, time passing, and the operator calls. After
every step the supervisor must agree with the model, written from the rules
(OTP's supervisor.erl and the docstring of ``_supervisor.py``), not from the
code: the children and their status, the order of every stop and start, and
whether it gave up. No real process and no sleep: the fake host finishes each
start and stop at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from stalwart.errors import ChildError, StartError
from stalwart.observe import EventBus
from stalwart.runtime import AgentProcess, ChildSpec, ExitInfo, Supervisor, SupervisorSpec
from stalwart.testing import FakeClock

IDS = [f"c{i}" for i in range(6)]
RESTARTS = ["permanent", "transient", "temporary"]


class FakeHost:
    """Starts and stops "processes" at once, and crashes them on demand."""

    def __init__(self) -> None:
        self.events = EventBus(log=False)
        self.running: dict[str, AgentProcess] = {}
        self.fail: dict[str, int] = {}  # id -> how many of its next starts fail
        self.log: list[tuple[str, str]] = []
        self._pids = itertools.count(1000)

    async def spawn(self, spec: ChildSpec, on_exit: Any) -> AgentProcess:
        assert spec.id not in self.running, f"{spec.id} started twice"
        if self.fail.get(spec.id, 0) > 0:
            self.fail[spec.id] -= 1
            self.log.append(("fail", spec.id))
            raise StartError(f"{spec.id} told to fail")
        proc = AgentProcess(spec, 1, next(self._pids))
        proc.state = "running"
        proc.on_exit = on_exit
        self.running[spec.id] = proc
        self.log.append(("start", spec.id))
        return proc

    def _end(self, proc: AgentProcess, reason: str) -> ExitInfo:
        info = ExitInfo(proc.name, 1, proc.pid, 0, None, reason)
        proc.exit, proc.state = info, "exited"
        self.running.pop(proc.name, None)
        if not proc.exited.done():
            proc.exited.set_result(info)
        return info

    async def terminate(self, proc: AgentProcess, shutdown: Any) -> ExitInfo:
        if proc.exit is not None:
            return proc.exit
        proc.stop_requested = True
        self.log.append(("stop", proc.name))
        return self._end(proc, "shutdown")

    def kill(self, proc: AgentProcess, reason: str, *, grace: float = 0.0) -> None:
        raise AssertionError("the supervisor under test never kills outside a shutdown")

    def crash(self, name: str, reason: str) -> None:
        proc = self.running[name]
        info = self._end(proc, reason)
        assert proc.on_exit is not None
        proc.on_exit(proc, info)


@dataclasses.dataclass
class MChild:
    id: str
    restart: str
    status: str = "running"  # running | undefined | restarting


class Model:
    """OTP's rules, restated plainly (see the module docstring)."""

    def __init__(self, strategy: str, intensity: int, period: float, children: list[MChild]):
        self.strategy, self.intensity, self.period = strategy, intensity, period
        self.children = children
        self.history: list[float] = []  # times of every restart ever counted
        self.gave_up = False
        self.fail: dict[str, int] = {}
        self.log: list[tuple[str, str]] = [("start", c.id) for c in children]

    def find(self, child_id: str) -> MChild | None:
        return next((c for c in self.children if c.id == child_id), None)

    def _start(self, c: MChild) -> bool:
        if self.fail.get(c.id, 0) > 0:
            self.fail[c.id] -= 1
            self.log.append(("fail", c.id))
            return False
        self.log.append(("start", c.id))
        c.status = "running"
        return True

    def _stop(self, c: MChild) -> None:
        if c.status == "running":
            self.log.append(("stop", c.id))
        c.status = "undefined"

    def exit(self, child_id: str, normal: bool, now: float) -> None:
        c = self.find(child_id)
        assert c is not None
        c.status = "undefined"
        if c.restart == "permanent" or (c.restart == "transient" and not normal):
            self.restart(c, now)
        elif c.restart == "temporary":
            self.children.remove(c)

    def restart(self, failed: MChild, now: float) -> None:
        pending: MChild | None = failed
        while pending is not None and not self.gave_up:
            self.history.append(now)
            recent = [t for t in self.history if now - self.period < t <= now]
            if len(recent) > self.intensity:
                for c in reversed(self.children):
                    self._stop(c)
                self.gave_up = True
                return
            pending = self._restart_group(pending)

    def _restart_group(self, failed: MChild) -> MChild | None:
        i = self.children.index(failed)
        group = {
            "one_for_one": [failed],
            "one_for_all": list(self.children),
            "rest_for_one": self.children[i:],
        }[self.strategy]
        for c in reversed(group):
            if c is not failed:
                self._stop(c)
                if c.restart == "temporary":
                    self.children.remove(c)
        started: list[MChild] = []
        for c in [c for c in group if c in self.children]:
            if not self._start(c):
                if self.strategy == "one_for_all":
                    for s in reversed(started):
                        self._stop(s)
                c.status = "restarting"
                return c  # retried at once (nothing else is queued between steps)
            started.append(c)
        return None


def specs(children: list[MChild]) -> list[ChildSpec]:
    return [ChildSpec(c.id, "stalwart.testing:ProbeAgent", restart=c.restart) for c in children]


class SupervisorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.host = FakeHost()
        self.sup: Supervisor | None = None
        self.model: Model | None = None

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _settle(self) -> None:
        """Let the supervisor handle everything queued (the fake host never waits)."""
        sup = self.sup
        assert sup is not None
        for _ in range(10_000):
            await asyncio.sleep(0)
            if sup._queue.empty() and not sup._lock.locked():
                return
        raise AssertionError("the supervisor did not settle")

    @initialize(
        strategy=st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"]),
        intensity=st.integers(0, 4),
        period=st.sampled_from([1.0, 5.0, 30.0]),
        restarts=st.lists(st.sampled_from(RESTARTS), min_size=1, max_size=4),
    )
    def start(self, strategy: str, intensity: int, period: float, restarts: list[str]) -> None:
        children = [MChild(IDS[i], r) for i, r in enumerate(restarts)]
        self.model = Model(strategy, intensity, period, children)
        spec = SupervisorSpec(
            "sup", specs(children), strategy=strategy, intensity=intensity, period=period
        )  # type: ignore[arg-type]

        async def make() -> Supervisor:
            sup = Supervisor(spec, self.host, clock=self.clock)  # type: ignore[arg-type]
            await sup.start()
            return sup

        self.sup = self.run(make())

    def _live(self) -> bool:
        return self.model is not None and not self.model.gave_up

    @precondition(lambda self: self._live())
    @rule(data=st.data(), reason=st.sampled_from(["killed", "exit_code", "normal", "shutdown"]))
    def crash(self, data: st.DataObject, reason: str) -> None:
        assert self.model is not None
        running = [c.id for c in self.model.children if c.status == "running"]
        if not running:
            return
        child_id = data.draw(st.sampled_from(running))
        self.host.crash(child_id, reason)
        self.model.exit(child_id, reason in ("normal", "shutdown"), self.clock.monotonic())
        self.run(self._settle())

    @precondition(lambda self: self._live())
    @rule(child=st.sampled_from(IDS), times=st.integers(1, 3))
    def make_starts_fail(self, child: str, times: int) -> None:
        assert self.model is not None
        self.host.fail[child] = times
        self.model.fail[child] = times

    @rule(seconds=st.sampled_from([0.5, 1.0, 4.0, 31.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def _expect(self, model_error: str | None, call: Any) -> None:
        if model_error is None:
            self.run(call)
            return
        with pytest.raises((ChildError, StartError)) as caught:
            self.run(call)
        if model_error == "start_error":
            assert isinstance(caught.value, StartError)
        else:
            assert isinstance(caught.value, ChildError)
            assert caught.value.reason == model_error

    @precondition(lambda self: self._live())
    @rule(child=st.sampled_from(IDS))
    def terminate_child(self, child: str) -> None:
        assert self.model is not None and self.sup is not None
        c = self.model.find(child)
        if c is not None:
            self.model._stop(c)
            if c.restart == "temporary":
                self.model.children.remove(c)
        self._expect(None if c else "not_found", self.sup.terminate_child(child))

    @precondition(lambda self: self._live())
    @rule(child=st.sampled_from(IDS))
    def restart_child(self, child: str) -> None:
        assert self.model is not None and self.sup is not None
        c = self.model.find(child)
        if c is None:
            err: str | None = "not_found"
        elif c.status in ("running", "restarting"):
            err = c.status
        else:
            err = None if self.model._start(c) else "start_error"
        self._expect(err, self.sup.restart_child(child))

    @precondition(lambda self: self._live())
    @rule(child=st.sampled_from(IDS))
    def delete_child(self, child: str) -> None:
        assert self.model is not None and self.sup is not None
        c = self.model.find(child)
        err = "not_found" if c is None else c.status if c.status != "undefined" else None
        if err is None:
            assert c is not None
            self.model.children.remove(c)
        self._expect(err, self.sup.delete_child(child))

    @precondition(lambda self: self._live())
    @rule(child=st.sampled_from(IDS), restart=st.sampled_from(RESTARTS))
    def start_child(self, child: str, restart: str) -> None:
        assert self.model is not None and self.sup is not None
        c = self.model.find(child)
        if c is not None:
            err: str | None = "already_started" if c.status == "running" else "already_present"
        else:
            new = MChild(child, restart)
            err = None if self.model._start(new) else "start_error"
            if err is None:
                self.model.children.append(new)
        spec = ChildSpec(child, "stalwart.testing:ProbeAgent", restart=restart)  # type: ignore[arg-type]
        self._expect(err, self.sup.start_child(spec))

    @invariant()
    def agrees_with_the_model(self) -> None:
        if self.sup is None or self.model is None:
            return
        model = self.model
        assert (self.sup.state == "gave_up") == model.gave_up
        assert self.host.log == model.log
        assert set(self.host.running) == {c.id for c in model.children if c.status == "running"}
        if model.gave_up:
            assert self.host.running == {}
            return
        rows = [(r.id, r.status) for r in self.sup.which_children()]
        assert rows == [(c.id, c.status) for c in model.children]
        counts = self.sup.count_children()
        assert counts.specs == len(model.children)
        assert counts.active == sum(c.status == "running" for c in model.children)

    @invariant()
    def one_for_all_never_leaves_a_lone_survivor(self) -> None:
        if self.sup is None or self.sup.spec.strategy != "one_for_all":
            return
        rows = self.sup.which_children()
        if any(r.status == "restarting" for r in rows):
            assert not any(r.running for r in rows)

    def teardown(self) -> None:
        if self.sup is not None:
            self.run(self.sup.stop())
        self.loop.close()


SupervisorMachine.TestCase.settings = settings(
    max_examples=80,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSupervisorModel = SupervisorMachine.TestCase
