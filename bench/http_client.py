"""CPU and wall time of one model call's HTTP exchange, three ways, in one run.

A model call's request goes from ``post_json`` (``stalwart.llm._http``) to the simulated
provider in a process of its own (zero latency), on a kept-alive connection:

- ``through_client``: through ``httpx.AsyncClient.send`` (its authentication, redirect,
  cookie and hook layers), each piece httpcore writes sent as it is written: how a call
  went before 2026-12-06;
- ``direct``: straight to the client's transport, pieces still sent one by one;
- ``direct_held``: straight to the transport, a request's head and body held and sent
  in one write (``AsyncioStream.write``): how a call goes now.

Each side runs ``--calls`` calls per round, in rounds that rotate the order; the figures
are medians over rounds of the loop thread's CPU time (``time.thread_time``) and the wall
time per call, with ratios to ``through_client``. Writes ``bench/results/http_client.json``.

    python bench/http_client.py [--rounds 6] [--calls 500]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import pathlib
import statistics
import sys
import time
from typing import Any

import httpx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bench._meta import commit
from bench.slow_model import _start_sims as start_sims
from bench.slow_model import _stop as stop_sims

from stalwart.llm import _netbackend
from stalwart.llm._http import post_json
from stalwart.llm._netbackend import AsyncioTransport

RESULTS = pathlib.Path(__file__).parent / "results" / "http_client.json"
BODY = {
    "model": "strong",
    "messages": [
        {"role": "system", "content": "You are a helpdesk agent. " * 20},
        {"role": "user", "content": "Where is my order #1234? It has not arrived. " * 10},
    ],
    "max_tokens": 200,
}
HEADERS = {"content-type": "application/json", "authorization": "Bearer sim"}


async def _measure(url: str, rounds: int, calls: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=10, max_keepalive_connections=10)
    transport = AsyncioTransport(limits=limits, retries=0)
    endpoint = f"{url}/v1/chat/completions"
    held = _netbackend._HOLD_BYTES

    async with httpx.AsyncClient(transport=transport, timeout=30) as client:

        async def one(direct: bool) -> None:
            await post_json(
                client, endpoint, model="sim:strong", headers=HEADERS, body=BODY,
                timeout=30, max_bytes=1 << 20, transport=transport if direct else None,
            )  # fmt: skip

        sides = {
            "through_client": (False, 0),  # a hold of 0 bytes: every piece sent at once
            "direct": (True, 0),
            "direct_held": (True, held),
        }
        for _ in range(100):  # warm: the connection, the sim's caches
            await one(True)
        found: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
        names = list(sides)
        try:
            for n in range(rounds):
                for name in names[n % 3 :] + names[: n % 3]:
                    direct, hold = sides[name]
                    _netbackend._HOLD_BYTES = hold
                    cpu0, wall0 = time.thread_time(), time.perf_counter()
                    for _ in range(calls):
                        await one(direct)
                    cpu = (time.thread_time() - cpu0) / calls * 1e6
                    wall = (time.perf_counter() - wall0) / calls * 1e6
                    found[name].append((cpu, wall))
        finally:
            _netbackend._HOLD_BYTES = held
    out: dict[str, Any] = {}
    for name, values in found.items():
        out[name] = {
            "cpu_us_per_call": round(statistics.median(v[0] for v in values), 1),
            "wall_us_per_call": round(statistics.median(v[1] for v in values), 1),
            "rounds_cpu_us": [round(v[0]) for v in values],
        }
    base = out["through_client"]
    for name in ("direct", "direct_held"):
        out[name]["cpu_ratio_to_through_client"] = round(
            out[name]["cpu_us_per_call"] / base["cpu_us_per_call"], 3
        )
        out[name]["wall_ratio_to_through_client"] = round(
            out[name]["wall_us_per_call"] / base["wall_us_per_call"], 3
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    url, workers = start_sims(1, 0.0)
    try:
        found = asyncio.run(_measure(url, args.rounds, args.calls))
    finally:
        stop_sims(workers)
    found["meta"] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit(),
        "cpus": os.cpu_count(),
        "rounds": args.rounds,
        "calls_per_round": args.calls,
        "statistic": "median over rounds of the per-call mean (loop thread CPU; wall)",
        "seconds": round(time.perf_counter() - started, 1),
        "load_average_1m": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
    }
    args.out.write_text(json.dumps(found, indent=2) + "\n")
    print(json.dumps(found, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
