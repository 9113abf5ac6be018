"""Overhead of the stalwart model-client path over a bare httpx call, against the sim.

Writes ``bench/results/models.json``: ``bare_call_p50_us`` (an httpx POST of the
same body, parsed), ``stalwart_call_p50_us`` (``OpenAIClient.complete``: deadline,
classification, retry wrapper, breaker, usage, cost, metrics), and the added
``added_p50_us`` / ``added_p99_us``. Target: under 300 us p50 added. The sim runs
in its own process (``stalwart sim``) so it does not share this interpreter's GIL.
Bare and stalwart calls are interleaved so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import time

import httpx

from stalwart.llm import Message, ModelRequest, Provider, model_client

RESULTS = pathlib.Path(__file__).parent / "results" / "models.json"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(calls: int, base: str) -> dict[str, float]:
    request = ModelRequest(messages=(Message("user", "What is the capital of Peru?"),))
    body = {
        "model": "strong",
        "messages": [{"role": "user", "content": request.messages[0].content}],
        "max_tokens": 1024,
        "temperature": 0.0,
    }
    async with httpx.AsyncClient(timeout=10) as http:
        client = model_client(
            "sim:strong", providers={"sim": Provider(base, api_key="k")}, http=http
        )
        bare: list[float] = []
        ours: list[float] = []
        for i in range(calls + 100):
            t0 = time.perf_counter()
            r = await http.post(
                f"{base}/chat/completions", json=body, headers={"authorization": "Bearer k"}
            )
            r.raise_for_status()
            r.json()
            t1 = time.perf_counter()
            await client.complete(request, timeout=10)
            t2 = time.perf_counter()
            if i >= 100:  # warm-up done
                bare.append((t1 - t0) * 1e6)
                ours.append((t2 - t1) * 1e6)
    added = [o - b for o, b in zip(ours, bare, strict=True)]
    return {
        "bare_call_p50_us": statistics.median(bare),
        "stalwart_call_p50_us": statistics.median(ours),
        "added_p50_us": statistics.median(ours) - statistics.median(bare),
        "added_p99_us": pct(ours, 0.99) - pct(bare, 0.99),
        "added_pairwise_p50_us": statistics.median(added),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args()
    sim = subprocess.Popen(
        [sys.executable, "-m", "stalwart.cli", "sim", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sim.stdout is not None
        line = sim.stdout.readline()
        match = re.search(r"models at (\S+) ", line)
        if match is None:
            raise SystemExit(f"the sim did not start: {line!r}")
        result: dict[str, object] = dict(
            asyncio.run(run(500 if args.quick else 3000, match.group(1)))
        )
    finally:
        sim.terminate()
        sim.wait(10)
    result["meta"] = {
        "mode": "quick" if args.quick else "full",
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "target_added_p50_us": 300,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
