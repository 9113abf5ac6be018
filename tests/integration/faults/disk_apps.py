"""The disk-full fault: an app whose tasks write sizeable journal entries and one side
effect, and the scenario that fills and frees the disk under a real node. Used by
tests/integration/faults/test_disk_full.py and bench/faults.py (``disk_full``)."""

from __future__ import annotations

import asyncio
import collections
import errno
import fcntl
import os
import pathlib
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from stalwart.agent import App, PythonAgent, TaskContext
from stalwart.errors import OutcomeUnknown, StalwartError

APP = "tests.integration.faults.disk_apps:app"


async def write(ctx: TaskContext, task_input: Any) -> dict[str, Any]:
    """Three 16 KiB steps (held after the first while ``hold`` names no file), then an
    at-most-once delivery appended to a file on another disk (the outside service)."""
    sizes = []
    for i in range(3):
        if i == 1 and task_input.get("hold"):  # in flight until the scenario lets it go on
            while not os.path.exists(task_input["hold"]):
                await asyncio.sleep(0.02)
        chunk = await ctx.step(f"chunk{i}", lambda i=i: f"{i}" * 16384)
        sizes.append(len(chunk))

    def deliver(*, idempotency_key: str) -> str:
        with open(task_input["deliveries"], "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write(idempotency_key + "\n")
        return "delivered"

    try:
        outcome = await ctx.durable.effect("deliver", deliver, deduplicated=False)
    except OutcomeUnknown:
        outcome = "unknown"
    return {"sizes": sizes, "delivery": outcome}


app = App(agents=[PythonAgent(name="writer", fn=write, max_tasks=8)], lease_seconds=3)


class CannotMount(Exception):
    """No small tmpfs here (not root, or mount refused): the scenario cannot run."""


@contextmanager
def small_disk(where: pathlib.Path, size_mb: int = 8) -> Iterator[pathlib.Path]:
    """A tmpfs of ``size_mb`` MiB mounted at ``where`` (needs root)."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        raise CannotMount("mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        raise CannotMount(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], timeout=30, check=False)


def fill(where: pathlib.Path) -> pathlib.Path:
    """Write a filler file until the disk refuses (ENOSPC); returns it."""
    filler = where / "filler"
    block = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:  # unbuffered: close() has nothing to flush
        while True:
            try:
                f.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return filler


async def until(check: Callable[[], Awaitable[bool]], timeout: float) -> float:
    """Poll ``check()`` until true (TimeoutError past ``timeout``); seconds it took."""
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)
    return time.monotonic() - started


async def disk_full_round(disk: pathlib.Path, workdir: pathlib.Path) -> dict[str, Any]:
    """One round on a real node whose SQLite store is on ``disk``: 5 tasks, 8 held
    mid-way, the disk filled, the held ones let go, 20 submitted into the full disk,
    the disk freed, 5 more. Returns what happened (accepted, completed, failed, lost,
    duplicated, quarantined, recovery times, the node's exit code)."""
    from stalwart.node import app_node
    from stalwart.observe import EventBus

    deliveries = workdir / "deliveries.log"
    deliveries.touch()
    hold = workdir / "go"
    node, service = app_node(APP, store=f"sqlite:///{disk}/s.db", events=EventBus(log=False))
    seen: dict[str, Any] = {"rejections": []}

    async def ready_is(want: bool) -> bool:
        return (await node.readiness.run()).ready is want

    async def submit(tid: str, **extra: Any) -> str:
        assert service.tasks is not None
        return await service.tasks.submit(
            "writer", {"deliveries": str(deliveries), **extra}, task_id=tid
        )

    async def work() -> None:
        await until(lambda: asyncio.sleep(0, node.ready), 30)
        tasks, store = service.tasks, service.store
        assert tasks is not None and store is not None
        accepted = [await submit(f"pre-{i}") for i in range(5)]
        for t in accepted:
            await tasks.wait(t, timeout=60)
        held = [await submit(f"held-{i}", hold=str(hold)) for i in range(8)]

        async def in_flight() -> bool:
            return all([(await store.load_journal(t)).entries for t in held])

        await until(in_flight, 30)
        filler = fill(disk)
        filled = time.monotonic()
        hold.touch()  # the held tasks go on writing into the full disk
        accepted += held
        for i in range(20):
            try:
                accepted.append(await submit(f"full-{i}"))
            except StalwartError as exc:
                seen["rejections"].append(f"{type(exc).__name__}: {exc}")
        await until(lambda: ready_is(False), 20)
        seen["not_ready_after_s"] = time.monotonic() - filled
        seen["report"] = (await node.readiness.run()).as_dict()
        filler.unlink()
        freed = time.monotonic()
        await until(lambda: ready_is(True), 20)
        seen["ready_after_freeing_s"] = time.monotonic() - freed
        accepted += [await submit(f"post-{i}") for i in range(5)]
        seen["records"] = [await tasks.wait(t, timeout=90) for t in accepted]
        seen["recovery_s"] = time.monotonic() - freed

    code = await node.run(until=work())
    records = seen["records"]
    keys = collections.Counter(deliveries.read_text().split())
    return {
        "accepted": len(records),
        "rejected_while_full": len(seen["rejections"]),
        "rejection": seen["rejections"][0] if seen["rejections"] else None,
        "completed": sum(r.status == "succeeded" for r in records),
        "failed": sum(r.status == "failed" for r in records),
        "quarantined": sum(r.status == "quarantined" for r in records),
        "lost": sum(not r.finished for r in records),
        "duplicated": sum(n - 1 for n in keys.values()),
        "unknown_outcomes": sum(
            r.status == "succeeded" and r.outcome["delivery"] == "unknown" for r in records
        ),
        "not_ready_after_s": round(seen["not_ready_after_s"], 3),
        "ready_after_freeing_s": round(seen["ready_after_freeing_s"], 3),
        "recovery_s": round(seen["recovery_s"], 3),
        "readiness_while_full": seen["report"],
        "node_exit_code": code,
        "statuses": [(r.id, r.status) for r in records if r.status != "succeeded"],
    }
