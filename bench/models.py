"""Overhead of the stalwart model-client path, and what tracing adds to it, against the sim.

Writes ``bench/results/models.json``. The sim runs in its own process (``stalwart
sim``) and so does the OTLP/HTTP receiver the traced calls export to, so neither
shares this interpreter's GIL or its CPU clock.

Every iteration makes three calls: a bare httpx POST of the same body, parsed
(``bare``); ``OpenAIClient.complete`` with tracing off (``off``: deadline,
classification, retry wrapper, breaker, usage, cost, metrics, its ``model_call``
log line); and the same call with tracing on (``on``: the ``chat`` span, exported
in batches by the span export thread through the SDK's OTLP/HTTP exporter). Their
order alternates (bare, off, on / on, off, bare), so a position effect (a call
running after another one's leftovers) hits each side equally. Each call is
timed twice: wall time (``perf_counter``) and this thread's CPU time
(``thread_time``). The second does not count time the thread spent waiting for
the CPU, so it holds on a loaded machine where the wall figures do not.

The statistic is the **paired difference**: per iteration, ``on - off`` (what
tracing adds) and ``off - bare`` (what stalwart adds), then the p50 and p99 of
those differences over ``calls`` iterations (after a warm-up). Keys:
``tracing_added_{cpu,wall}_{p50,p99}_us`` and ``added_{cpu,wall}_{p50,p99}_us``;
``*_call_p50_us`` are the plain medians of each series. Targets: tracing adds
under 50 us p50, stalwart under 300 us p50.

Work the export thread does is off the call path but not free: after the run the
provider is flushed and the CPU this process spent outside the calling thread,
divided by the traced calls, is ``export_cpu_per_span_us`` (span conversion,
protobuf encoding, the HTTP POST).

The instrumentation alone (the ``observed_call`` block: span, attributes, log line,
no I/O) is also timed in a tight loop, interleaved off/on, as this thread's CPU:
``instrumentation_{off,on}_p50_us`` and the p50 of the paired differences,
``instrumentation_added_p50_us``. Log lines go through the JSON pipeline to a
discarded stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import time

import httpx

from stalwart.llm import Message, ModelRequest, Provider, Usage, model_client
from stalwart.llm._trace import observed_call
from stalwart.observe import REGISTRY, _tracing, configure_logging, configure_tracing

RESULTS = pathlib.Path(__file__).parent / "results" / "models.json"

# a loopback OTLP/HTTP receiver in its own process: accepts every export, keeps nothing
COLLECTOR = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _tracing_state(endpoint: str) -> _tracing._Tracing:
    """Configure tracing once and hand back its state, so calls can switch it on and off."""
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    assert configure_tracing(service_name="bench")
    state = _tracing._STATE
    assert state is not None
    _tracing._STATE = None
    return state


def instrumentation(state: _tracing._Tracing, n: int) -> dict[str, float]:
    """The ``observed_call`` block alone, this thread's CPU, off and on interleaved."""
    request = ModelRequest(messages=(Message("user", "hi"),))
    usage = Usage(prompt_tokens=12, completion_tokens=7)
    off: list[float] = []
    on: list[float] = []
    for i in range(n + 200):
        order = ((None, off), (state, on)) if i % 2 == 0 else ((state, on), (None, off))
        for traced, into in order:
            _tracing._STATE = traced
            t0 = time.thread_time_ns()
            with observed_call("sim", "strong", "sim:strong", request) as call:
                call.answered(usage, "stop", 0.0001)
            if i >= 200:
                into.append((time.thread_time_ns() - t0) / 1e3)
    _tracing._STATE = None
    return {
        "instrumentation_off_p50_us": statistics.median(off),
        "instrumentation_on_p50_us": statistics.median(on),
        "instrumentation_added_p50_us": statistics.median(
            [a - b for a, b in zip(on, off, strict=True)]
        ),
    }


async def run(calls: int, base: str, state: _tracing._Tracing) -> dict[str, float]:
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

        async def bare() -> None:
            r = await http.post(
                f"{base}/chat/completions", json=body, headers={"authorization": "Bearer k"}
            )
            r.raise_for_status()
            r.json()

        async def off() -> None:
            await client.complete(request, timeout=10)

        async def on() -> None:
            _tracing._STATE = state
            try:
                await client.complete(request, timeout=10)
            finally:
                _tracing._STATE = None

        kinds = {"bare": bare, "off": off, "on": on}
        wall: dict[str, list[float]] = {k: [] for k in kinds}
        cpu: dict[str, list[float]] = {k: [] for k in kinds}
        for i in range(calls + 100):
            order = ("bare", "off", "on") if i % 2 == 0 else ("on", "off", "bare")
            for kind in order:
                w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
                await kinds[kind]()
                c1, w1 = time.thread_time_ns(), time.perf_counter_ns()
                if i >= 100:  # warm-up done
                    wall[kind].append((w1 - w0) / 1e3)
                    cpu[kind].append((c1 - c0) / 1e3)
    out: dict[str, float] = {}
    for clock, series in (("wall", wall), ("cpu", cpu)):
        for name, hi, lo in (("tracing_added", "on", "off"), ("added", "off", "bare")):
            diffs = [a - b for a, b in zip(series[hi], series[lo], strict=True)]
            out[f"{name}_{clock}_p50_us"] = statistics.median(diffs)
            out[f"{name}_{clock}_p99_us"] = pct(diffs, 0.99)
        for kind in kinds:
            out[f"{kind}_call_{clock}_p50_us"] = statistics.median(series[kind])
    return out


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
    collector = subprocess.Popen(
        [sys.executable, "-c", COLLECTOR], stdout=subprocess.PIPE, text=True
    )
    calls = 1000 if args.quick else 3000
    try:
        assert sim.stdout is not None and collector.stdout is not None
        line = sim.stdout.readline()
        match = re.search(r"models at (\S+) ", line)
        if match is None:
            raise SystemExit(f"the sim did not start: {line!r}")
        port = int(collector.stdout.readline())
        configure_logging(stream=open(os.devnull, "w"))  # noqa: SIM115 - lives for the run
        state = _tracing_state(f"http://127.0.0.1:{port}")
        # one traced call exported first: the exporter's lazy imports and its connection
        # are set-up cost, not the per-span cost measured below
        _tracing._STATE = state
        with observed_call("sim", "s", "sim:s", ModelRequest(messages=(Message("user", "hi"),))):
            pass
        _tracing._STATE = None
        state.processor.flush()
        main_cpu, all_cpu = time.thread_time(), time.process_time()
        result: dict[str, object] = dict(asyncio.run(run(calls, match.group(1), state)))
        state.shutdown()  # export what is queued: its CPU belongs to this run
        other_cpu = (time.process_time() - all_cpu) - (time.thread_time() - main_cpu)
        for outcome in ("exported", "dropped", "export_failed"):
            result[f"spans_{outcome}"] = (
                REGISTRY.get_sample_value("stalwart_trace_spans_total", {"outcome": outcome}) or 0
            )
        result["export_cpu_per_span_us"] = other_cpu / (calls + 100) * 1e6
        state = _tracing_state(f"http://127.0.0.1:{port}")
        result.update(instrumentation(state, calls * 4))
        state.shutdown()
    finally:
        sim.terminate()
        collector.terminate()
        sim.wait(10)
        collector.wait(10)
    result["meta"] = {
        "mode": "quick" if args.quick else "full",
        "iterations": calls,
        "statistic": "p50 / p99 of per-iteration paired differences (on - off, off - bare), "
        "call order alternating; cpu = this thread's CPU time, wall = perf_counter",
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "target_added_p50_us": 300,
        "target_tracing_added_p50_us": 50,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
