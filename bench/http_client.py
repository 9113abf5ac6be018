"""Client CPU and wall time of one model call and one tool call over HTTP: this tree
against a base commit, in one run.

Against the simulated provider (zero latency, its own process), on a kept-alive
connection, two kinds of call:

- ``model``: a model call's POST as the model clients send it: ``post_json``
  (``stalwart.llm._http``) straight to the client's ``AsyncioTransport``, JSON encoded
  and decoded;
- ``tool``: a tool's GET as the helpdesk's tools send it: ``httpx.AsyncClient.get`` on
  an ``AsyncioTransport`` (``stalwart.demo.app.http``), the body read and decoded.

Each side (``base``: ``--base``'s ``src``, extracted with ``git archive``; ``now``: this
tree) runs in a process of its own; each process runs ``--calls`` calls of a kind per
round, the rounds interleaved (base, now, now, base...). The figures are medians over
rounds of the loop thread's CPU time (``time.thread_time``) and the wall time per call,
and the ratios now / base. Writes ``bench/results/http_client.json``.

    python bench/http_client.py [--base main] [--rounds 8] [--calls 1000]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "http_client.json"
BODY = {
    "model": "strong",
    "messages": [
        {"role": "system", "content": "You are a helpdesk agent. " * 20},
        {"role": "user", "content": "Where is my order #1234? It has not arrived. " * 10},
    ],
    "max_tokens": 200,
}
HEADERS = {"content-type": "application/json", "authorization": "Bearer sim"}
KINDS = ("model", "tool")


def _worker(src: str, url: str) -> None:
    """One side: runs the rounds it is told on stdin (``KIND CALLS``), answers each with
    ``{"cpu": s, "wall": s}`` on stdout."""
    sys.path.insert(0, src)
    import asyncio

    import httpx

    from stalwart.llm._http import post_json
    from stalwart.llm._netbackend import AsyncioTransport

    async def run() -> None:
        limits = httpx.Limits(max_connections=10, max_keepalive_connections=10)
        transport = AsyncioTransport(limits=limits, retries=0)
        endpoint = f"{url}/v1/chat/completions"
        order = f"{url}/tools/orders/1234"
        async with httpx.AsyncClient(transport=transport, timeout=30) as client:

            async def model() -> None:
                await post_json(
                    client, endpoint, model="sim:strong", headers=HEADERS, body=BODY,
                    timeout=30, max_bytes=1 << 20, transport=transport,
                )  # fmt: skip

            async def tool() -> None:
                r = await client.get(order)
                r.raise_for_status()
                r.json()

            calls = {"model": model, "tool": tool}
            for _ in range(100):  # warm: the connection, the sim's caches
                await model()
                await tool()
            loop = asyncio.get_running_loop()
            while line := await loop.run_in_executor(None, sys.stdin.readline):
                kind, count = line.split()
                call = calls[kind]
                cpu0, wall0 = time.thread_time(), time.perf_counter()
                for _ in range(int(count)):
                    await call()
                found = {"cpu": time.thread_time() - cpu0, "wall": time.perf_counter() - wall0}
                print(json.dumps(found), flush=True)

    asyncio.run(run())


def _base_tree(ref: str, where: str) -> tuple[str, str]:
    """``ref``'s ``src`` extracted into ``where``, and ``ref``'s short hash."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "src"], capture_output=True, check=True, timeout=60
    ).stdout
    subprocess.run(["tar", "-x", "-C", where], input=archive, check=True, timeout=60)
    short = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", ref],
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout.strip()  # fmt: skip
    return str(pathlib.Path(where) / "src"), short


def _measure(url: str, base_src: str, rounds: int, calls: int) -> dict[str, Any]:
    sides = {"base": base_src, "now": str(ROOT / "src")}
    procs = {
        name: subprocess.Popen(
            [sys.executable, __file__, "--worker", src, "--url", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name, src in sides.items()
    }
    found: dict[str, dict[str, list[tuple[float, float]]]] = {
        kind: {name: [] for name in sides} for kind in KINDS
    }
    try:
        for n in range(rounds):
            for kind in KINDS:
                order = ["base", "now"] if n % 2 == 0 else ["now", "base"]
                for name in order:
                    proc = procs[name]
                    assert proc.stdin is not None and proc.stdout is not None
                    proc.stdin.write(f"{kind} {calls}\n")
                    proc.stdin.flush()
                    line = proc.stdout.readline()
                    if not line:
                        raise RuntimeError(f"the {name} worker ended")
                    got = json.loads(line)
                    found[kind][name].append((got["cpu"] / calls * 1e6, got["wall"] / calls * 1e6))
    finally:
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    out: dict[str, Any] = {}
    for kind, by_side in found.items():
        section: dict[str, Any] = {}
        for name, values in by_side.items():
            section[name] = {
                "cpu_us_per_call": round(statistics.median(v[0] for v in values), 1),
                "wall_us_per_call": round(statistics.median(v[1] for v in values), 1),
                "rounds_cpu_us": [round(v[0]) for v in values],
            }
        section["cpu_ratio_now_to_base"] = round(
            section["now"]["cpu_us_per_call"] / section["base"]["cpu_us_per_call"], 3
        )
        section["wall_ratio_now_to_base"] = round(
            section["now"]["wall_us_per_call"] / section["base"]["wall_us_per_call"], 3
        )
        out[kind] = section
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default="main", help="the commit compared against")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.url)
        return 0
    sys.path.insert(0, str(ROOT))
    from bench._meta import commit
    from bench.slow_model import _start_sims as start_sims
    from bench.slow_model import _stop as stop_sims

    with tempfile.TemporaryDirectory(prefix="http_client_base_") as where:
        base_src, base_commit = _base_tree(args.base, where)
        load_start = os.getloadavg()[0]
        started = time.perf_counter()
        url, workers = start_sims(1, 0.0)
        try:
            found = _measure(url, base_src, args.rounds, args.calls)
        finally:
            stop_sims(workers)
    found["meta"] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit(),
        "base": f"{args.base} ({base_commit})",
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
