"""Child process for the kill-and-resume test: runs (or resumes) one 30-step task.

argv: STORE_URL TASK_ID SERVICE_URL CLOCK_OFFSET KILL_SPEC [no-reconcile]
KILL_SPEC is "none", "before:N" (SIGKILL inside step N before it returns),
"after:N" (right after step N is recorded) or "effect:N" (inside side effect N,
after the service delivered, before "completed" is recorded).
Prints "ready" once the store is open, then one JSON line with the outcome.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import signal
import sys
import urllib.parse
from typing import Any

from stalwart.durable import NOT_DELIVERED, Context, Runner, open_store
from stalwart.errors import OutcomeUnknown
from stalwart.observe import configure_logging

BASE_TIME = 1_800_000_000.0


class CountingClock:
    """ctx.now() reads: the k-th reading of this task's life is BASE + 1.5 k.

    The parent passes how many readings the journal already holds, so a correct
    resume continues the sequence exactly; a resume that re-read the clock for
    recorded steps would shift every later value and change the result.
    """

    def __init__(self, offset: int) -> None:
        self.k = offset

    def time(self) -> float:
        value = BASE_TIME + 1.5 * self.k
        self.k += 1
        return value

    def monotonic(self) -> float:
        import time

        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def mix(acc: str, value: Any) -> str:
    return hashlib.sha256(f"{acc}|{json.dumps(value)}".encode()).hexdigest()[:16]


def http_call(base: str, method: str, path: str, body: Any, key: str) -> Any:
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(
            method,
            path,
            body=data,
            headers={"Idempotency-Key": key, "Content-Type": "application/json"},
        )
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def workflow(service: str, kill: str, reconcile: bool = True) -> Any:
    phase, _, at = kill.partition(":")
    kill_at = int(at) if at else -1

    async def run(ctx: Context, inp: Any) -> Any:
        acc = inp["seed"]
        unknown = 0
        for i in range(30):
            kind = i % 6

            def compute(acc: str = acc, i: int = i) -> str:
                if phase == "before" and i == kill_at:
                    die()
                return mix(acc, i)

            async def compute_async(acc: str = acc, i: int = i) -> str:
                await asyncio.sleep(0)
                return compute(acc, i)

            def charge(kind_: str, amount: int, *, idempotency_key: str, i: int = i) -> Any:
                response = http_call(
                    service, "POST", f"/{kind_}", {"amount": amount}, idempotency_key
                )
                if phase == "effect" and i == kill_at:
                    die()
                return response

            def sent(key: str) -> Any:
                answer = http_call(service, "GET", f"/email?key={key}", None, key)
                return answer["response"] if answer["found"] else NOT_DELIVERED

            if kind == 0:
                acc = await ctx.step(f"compute-{i}", compute)
            elif kind == 1:
                acc = mix(acc, await ctx.now())
            elif kind == 2:
                acc = mix(acc, await ctx.random())
            elif kind == 3:
                acc = await ctx.step(f"compute-async-{i}", compute_async)
            elif kind == 4:
                amount = int(acc[:4], 16)
                receipt = await ctx.effect(f"pay-{i}", charge, "pay", amount, deduplicated=True)
                acc = mix(acc, receipt)
            else:
                amount = int(acc[4:8], 16)
                try:
                    receipt = await ctx.effect(
                        f"email-{i}",
                        charge,
                        "email",
                        amount,
                        deduplicated=False,
                        reconcile=sent if reconcile else None,
                    )
                except OutcomeUnknown:
                    unknown += 1
                    receipt = "unknown"
                acc = mix(acc, receipt)
            if phase == "after" and i == kill_at:
                die()
        return {"acc": acc, "unknown": unknown}

    return run


async def main() -> None:
    store_url, task_id, service, offset, kill = sys.argv[1:6]
    reconcile = sys.argv[6:7] != ["no-reconcile"]
    configure_logging(stream=sys.stderr)
    store = await open_store(store_url)
    try:
        runner = Runner(store, clock=CountingClock(int(offset)), owner=f"child-{os.getpid()}")
        print("ready", flush=True)
        result = await runner.run(task_id, workflow(service, kill, reconcile), force=True)
        events = runner.events
        print(
            json.dumps(
                {
                    "status": result.status,
                    "result": result.result,
                    "replayed": result.replayed_steps,
                    "executed": result.executed_steps,
                    "unknown_events": len(events.recent("durable.effect_outcome_unknown")),
                    "reconciled_events": len(events.recent("durable.effect_reconciled")),
                }
            ),
            flush=True,
        )
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
