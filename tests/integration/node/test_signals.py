"""SIGTERM stops every node of the process, even after a nested node has come and gone."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from stalwart.node import Node
from stalwart.observe import EventBus
from stalwart.runtime import ChildSpec, SupervisorSpec
from stalwart.testing import ProbeAgent


def node(name: str) -> Node:
    tree = SupervisorSpec("root", [ChildSpec("p", ProbeAgent)])
    return Node(tree, node_id=name, events=EventBus(log=False))


@pytest.mark.timeout(60)
async def test_a_node_that_ends_leaves_the_others_signal_handler_in_place():
    before = signal.getsignal(signal.SIGTERM)
    outer, inner = node("outer"), node("inner")
    reached: list[str] = []

    async def work() -> None:
        # a node that comes and goes inside another (a load run's node inside verify)
        assert await inner.run(until=asyncio.sleep(0)) == 0
        handler = signal.getsignal(signal.SIGTERM)
        assert handler is not before, "the outer node's SIGTERM handler was removed"
        reached.append("handler in place")
        os.kill(os.getpid(), signal.SIGTERM)  # the process is asked to stop
        await asyncio.sleep(30)  # the outer node stops before this ends

    async with asyncio.timeout(40):
        assert await outer.run(until=work()) == 0
    assert reached == ["handler in place"]
    assert signal.getsignal(signal.SIGTERM) == before  # the last node out removed it
