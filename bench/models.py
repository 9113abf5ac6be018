"""Overhead of the stalwart model-client path over a bare httpx call, against the sim.

Writes ``bench/results/models.json``: ``bare_call_p50_us`` (an httpx POST of the
same body, parsed), ``stalwart_call_p50_us`` (``OpenAIClient.complete``: deadline,
classification, retry wrapper, breaker, usage, cost, metrics, its ``model_call``
log line, tracing off), and the added ``added_p50_us`` / ``added_p99_us``. Target:
under 300 us p50 added. The sim runs in its own process (``stalwart sim``) so it
does not share this interpreter's GIL. Bare and stalwart calls are interleaved so
machine noise hits both alike.

Tracing, side by side in the same run: every iteration also makes the stalwart call
with tracing on (the SDK's ``BatchSpanProcessor`` and OTLP/HTTP exporter sending to a
loopback receiver in this process), giving ``traced_call_p50_us`` and
``tracing_added_p50_us`` (median on minus median off) and
``tracing_added_pairwise_p50_us`` (median of per-iteration differences). Because one
HTTP round trip is noisy at the 10 us scale, the instrumentation alone (the
``observed_call`` block: span, attributes, log line, no I/O) is also timed in a tight
loop with tracing off and on: ``instrumentation_off_p50_us`` /
``instrumentation_on_p50_us``. Target: tracing adds under 50 us per call. Log lines go
through the JSON pipeline to a discarded stream.
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import threading
import time

import httpx

from stalwart.llm import Message, ModelRequest, Provider, Usage, model_client
from stalwart.llm._trace import observed_call
from stalwart.observe import _tracing, configure_logging, configure_tracing, shutdown_tracing

RESULTS = pathlib.Path(__file__).parent / "results" / "models.json"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class _Collector(http.server.BaseHTTPRequestHandler):
    """A loopback OTLP/HTTP receiver: accepts every export, keeps nothing."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _tracing_state(endpoint: str) -> object:
    """Configure tracing once and hand back its state, so calls can switch it on and off."""
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    assert configure_tracing(service_name="bench")
    state = _tracing._STATE
    _tracing._STATE = None
    return state


def instrumentation(state: object, n: int) -> dict[str, float]:
    """p50 of the ``observed_call`` block alone, tracing off and on (interleaved)."""
    request = ModelRequest(messages=(Message("user", "hi"),))
    usage = Usage(prompt_tokens=12, completion_tokens=7)
    off: list[float] = []
    on: list[float] = []
    for i in range(n + 200):
        for traced, into in ((None, off), (state, on)):
            _tracing._STATE = traced  # type: ignore[assignment]
            t0 = time.perf_counter()
            with observed_call("sim", "strong", "sim:strong", request) as call:
                call.answered(usage, "stop", 0.0001)
            if i >= 200:
                into.append((time.perf_counter() - t0) * 1e6)
    _tracing._STATE = None
    return {
        "instrumentation_off_p50_us": statistics.median(off),
        "instrumentation_on_p50_us": statistics.median(on),
        "instrumentation_added_p50_us": statistics.median(on) - statistics.median(off),
    }


async def run(calls: int, base: str, state: object) -> dict[str, float]:
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
        traced: list[float] = []
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
            _tracing._STATE = state  # type: ignore[assignment]
            await client.complete(request, timeout=10)
            t3 = time.perf_counter()
            _tracing._STATE = None
            if i >= 100:  # warm-up done
                bare.append((t1 - t0) * 1e6)
                ours.append((t2 - t1) * 1e6)
                traced.append((t3 - t2) * 1e6)
    added = [o - b for o, b in zip(ours, bare, strict=True)]
    tracing_added = [t - o for t, o in zip(traced, ours, strict=True)]
    return {
        "bare_call_p50_us": statistics.median(bare),
        "stalwart_call_p50_us": statistics.median(ours),
        "added_p50_us": statistics.median(ours) - statistics.median(bare),
        "added_p99_us": pct(ours, 0.99) - pct(bare, 0.99),
        "added_pairwise_p50_us": statistics.median(added),
        "traced_call_p50_us": statistics.median(traced),
        "tracing_added_p50_us": statistics.median(traced) - statistics.median(ours),
        "tracing_added_pairwise_p50_us": statistics.median(tracing_added),
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
        configure_logging(stream=open(os.devnull, "w"))  # noqa: SIM115 - lives for the run
        collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
        threading.Thread(target=collector.serve_forever, daemon=True).start()
        state = _tracing_state(f"http://127.0.0.1:{collector.server_address[1]}")
        calls = 500 if args.quick else 3000
        result: dict[str, object] = dict(asyncio.run(run(calls, match.group(1), state)))
        result.update(instrumentation(state, calls * 4))
    finally:
        sim.terminate()
        sim.wait(10)
        _tracing._STATE = state if "state" in locals() else None  # type: ignore[assignment]
        shutdown_tracing()
    result["meta"] = {
        "mode": "quick" if args.quick else "full",
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "target_added_p50_us": 300,
        "target_tracing_added_p50_us": 50,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
