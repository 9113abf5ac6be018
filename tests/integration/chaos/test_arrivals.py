"""Open-loop arrivals from a child process (``stalwart load`` over HTTP), against a real
HTTP server on loopback that accepts two submissions of three and sheds the third."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import ClassVar

import pytest
from tests._loopback import JsonHandler, threaded

from stalwart.chaos import Driver
from stalwart.chaos._arrivals import Arrival, RemoteArrivals, Started, run_remote
from stalwart.errors import StalwartError

INPUTS = "examples.helpdesk.tickets:generate"


class _Api(JsonHandler):
    posted: ClassVar[list[dict]] = []
    shed: ClassVar[set[str]] = set()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.headers["Authorization"] == "Bearer tok"
        self.posted.append(body)
        if len(self.posted) % 3 == 0:
            self.shed.add(body["task_id"])
            self.reply(429, {"error": "full"}, {"Retry-After": "1"})
        else:
            self.reply(202, {"id": body["task_id"], "agent": body["agent"], "status": "pending"})


@pytest.fixture
def api() -> Iterator[str]:
    _Api.posted, _Api.shed = [], set()
    with threaded(_Api) as url:
        yield url


async def test_the_child_sends_the_phase_and_reports_each_answer(api):
    events: list[Started | Arrival] = []
    before = time.monotonic()
    finished = await run_remote(
        RemoteArrivals(api, "tok", INPUTS), agent="triage", seed=3, rng_seed=7, rate=40.0,
        duration=1.0, max_tasks=12, first=100, submit_timeout=5.0, on_event=events.append,
    )  # fmt: skip
    assert isinstance(events[0], Started) and events[0].at >= before  # one clock for both
    answers = [e for e in events if isinstance(e, Arrival)]
    assert finished.arrivals == len(answers) == len(_Api.posted) == 12  # capped by max_tasks
    assert sorted(a.i for a in answers) == list(range(100, 112))
    refused = [a for a in answers if not a.accepted]
    assert len(refused) == 4 and {a.reason for a in refused} == {"Overloaded"}
    assert all(a.message.endswith(": full") for a in refused)
    # the tasks the parent's inputs(i) would send, with their ids and seed
    from examples.helpdesk.tickets import generate

    wanted = generate(200, 3)
    assert {p["task_id"]: p["input"] for p in _Api.posted} == {
        f"t{i:06d}": wanted[i] for i in range(100, 112)
    }
    assert {p["seed"] for p in _Api.posted} == {3}


async def test_a_driver_counts_what_the_child_sent(api):
    from stalwart.chaos._target import load_inputs

    class Store:  # the driver follows tasks here: each is done when asked
        async def get(self, task_id: str) -> None:
            return None

        async def submit(self, *a: object, **k: object) -> str:
            raise AssertionError("open loops go through the child")

    driver = Driver(Store(), "triage", load_inputs(INPUTS, 1), seed=1,  # type: ignore[arg-type]
                    remote=RemoteArrivals(api, "tok", INPUTS))  # fmt: skip
    phase = await driver.open_loop("p", 30.0, 0.6, max_tasks=9)
    assert phase.arrivals == 9 and phase.submitted == 6 and phase.rejections == {"Overloaded": 3}
    assert driver.outstanding == {f"t{i:06d}" for i in range(9)} - _Api.shed
    assert phase.offered >= 0.6
    second = await driver.open_loop("q", 30.0, 0.3, max_tasks=2)
    assert second.arrivals == 2  # numbered on from the first phase's last arrival
    assert {p["task_id"] for p in _Api.posted[-2:]} == {"t000009", "t000010"}


async def test_a_child_that_cannot_start_its_phase_says_why(api):
    with pytest.raises(StalwartError, match="no_such_module"):
        await run_remote(
            RemoteArrivals(api, "tok", "no_such_module:generate"), agent="a", seed=1,
            rng_seed=1, rate=10.0, duration=0.2, max_tasks=5, first=0, submit_timeout=5.0,
            on_event=lambda e: None,
        )  # fmt: skip
    assert _Api.posted == []
