"""The one shape the three adapter benches write into ``bench/results/adapters.json``.

``adapter_langgraph.py``, ``adapter_openai_agents.py`` and ``adapter_pydantic_ai.py``
each merge one key (``langgraph``, ``openai_agents``, ``pydantic_ai``), shaped so::

    {
      "tasks": 40,                          # the kill run: tickets run on a real node
      "kills": 24,                          # SIGKILLs of the agent process mid-task
      "rerun_model_calls_after_kill": 0,    # model requests the simulated provider answered
                                            # in the killed run beyond the undisturbed one's
      "duplicate_side_effects": 0,          # refunds the payment service got twice
      "different_results": 0,               # tasks whose result differs from undisturbed
      "added_latency_p50_ms": 0.4,          # = latency.added_p50_ms (target: under 1)
      "latency": {
        "statistic": "...",                 # what is timed, where, and over what
        "store": "sqlite, durability=full",
        "model_calls_each": 150,            # samples per side
        "bare_p50_ms": ..., "bare_p90_ms": ...,
        "adapter_p50_ms": ..., "adapter_p90_ms": ...,
        "added_p50_ms": ...,                # adapter p50 - bare p50
        "added_paired_median_ms": ...,      # median over tickets of (the adapter's mean
                                            # call - the bare one's, same ticket)
        "adapter_fsynced_model_records": {  # the same adapter, each model call's record
          "p50_ms": ..., "p90_ms": ...,     # fsynced on its own (as before it became a
          "added_p50_ms": ...,              # lazy commit), in the same run
          "added_paired_median_ms": ...
        },
        "adapter_reserving_each_call": {...},  # the same adapter, each model call's spend
                                            # reservation committed on its own (as before
                                            # a tool-calling reply reserved the next call
                                            # with its settle), in the same run; same keys
        "target_added_p50_ms": 1.0
      },
      "kill_run": {...},                    # the framework's own detail of the kill run
      "latency_detail": {...},              # and of the latency run
      "run": {"at": "...Z", "commit": "...", "command": "...", "seconds": ...,
              "load_average_1m": {"start": ..., "end": ...}, "machine": "...",
              "python": "..."}
    }

Latency: the same tickets, the same simulated provider, in one process; per ticket the
bare framework runs, then the three adapter sides in turn (in an order that rotates from
ticket to ticket), so all four see the same machine load. Every figure is in
milliseconds.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench._meta import commit

from stalwart.agent import _context

RESULTS = pathlib.Path(__file__).parent / "results" / "adapters.json"
ROOT = pathlib.Path(__file__).resolve().parent.parent

SIDES = ("bare", "adapter", "adapter_fsynced_model_records", "adapter_reserving_each_call")
"""The latency sides: the bare framework; the adapter as shipped (a model call's record a
lazy commit, a tool-calling reply reserving the next call with its settle); the adapter
with each model record fsynced on its own; the adapter with each call's spend reservation
committed on its own (the base of the reservation taken ahead)."""


@contextmanager
def model_records(side: str) -> Iterator[None]:
    """Run the adapter ``side`` (the adapter sides differ only in these switches)."""
    lazy, ahead = _context.LAZY_MODEL_RECORDS, _context.RESERVE_AHEAD
    _context.LAZY_MODEL_RECORDS = side != "adapter_fsynced_model_records"
    _context.RESERVE_AHEAD = side != "adapter_reserving_each_call"
    try:
        yield
    finally:
        _context.LAZY_MODEL_RECORDS, _context.RESERVE_AHEAD = lazy, ahead


def adapter_order(n: int) -> tuple[str, ...]:
    """The adapter sides for ticket ``n``, in the order they run: rotated per ticket, so
    each runs first, second and last equally often."""
    sides = SIDES[1:]
    k = n % len(sides)
    return sides[k:] + sides[:k]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency_block(
    samples: dict[str, list[float]],
    per_ticket: dict[str, list[float]],
    *,
    statistic: str,
    store: str = "sqlite, durability=full",
) -> dict[str, Any]:
    """The common ``latency`` block from per-call samples (seconds) of each side and the
    per-ticket mean call of each side (seconds, tickets in the same order)."""

    def ms(value: float) -> float:
        return round(value * 1000, 3)

    bare = statistics.median(samples["bare"])

    def side(name: str) -> dict[str, float]:
        paired = [a - b for a, b in zip(per_ticket[name], per_ticket["bare"], strict=True)]
        p50 = statistics.median(samples[name])
        return {
            "p50_ms": ms(p50),
            "p90_ms": ms(pct(samples[name], 0.9)),
            "added_p50_ms": ms(p50 - bare),
            "added_paired_median_ms": ms(statistics.median(paired)),
        }

    adapter = side("adapter")
    return {
        "statistic": statistic,
        "store": store,
        "model_calls_each": min(len(v) for v in samples.values()),
        "bare_p50_ms": ms(bare),
        "bare_p90_ms": ms(pct(samples["bare"], 0.9)),
        "adapter_p50_ms": adapter["p50_ms"],
        "adapter_p90_ms": adapter["p90_ms"],
        "added_p50_ms": adapter["added_p50_ms"],
        "added_paired_median_ms": adapter["added_paired_median_ms"],
        "adapter_fsynced_model_records": side("adapter_fsynced_model_records"),
        "adapter_reserving_each_call": side("adapter_reserving_each_call"),
        "target_added_p50_ms": 1.0,
    }


def run_info(command: str, started: float, load_before: float) -> dict[str, Any]:
    """The ``run`` block: when, on what commit, how long, and how loaded the machine was."""
    return {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit(),
        "command": command,
        "seconds": round(time.monotonic() - started, 1),
        # the machine is shared: latency figures compare only within one run
        "load_average_1m": {"start": round(load_before, 1), "end": round(os.getloadavg()[0], 1)},
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "python": platform.python_version(),
    }


def write(framework: str, result: dict[str, Any], path: pathlib.Path = RESULTS) -> None:
    """Merge ``result`` under ``framework`` (the other frameworks' keys are kept)."""
    for key in (
        "tasks", "kills", "rerun_model_calls_after_kill", "duplicate_side_effects",
        "different_results", "added_latency_p50_ms", "latency", "run",
    ):  # fmt: skip
        assert key in result, f"{framework}: the result lacks {key!r}"
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged[framework] = result
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
