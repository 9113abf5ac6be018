"""Overhead of the full resilience stack on a successful call.

Measures a trivial dependency call made bare and through a :class:`Policy` with
every layer on (deadline scope + classification-ready error path + retry loop +
circuit breaker + metrics), sync and async, and writes
``bench/results/resilience.json``:

- ``bare_p50_us``: the bare call, median, in microseconds;
- ``overhead_p50_us`` / ``overhead_p99_us``: what the policy adds at p50 / p99;
- ``overhead_ratio_p50``: policy call p50 / bare call p50;
- the same for the async path under ``async_*`` (and a rate-limited variant).

Each call is timed on its own with ``time.perf_counter_ns`` (the timer's own
cost is in both the bare and the policy figures, so it cancels in the overhead).
Target (issue 3): under 20 µs added at p50.

Usage: ``python bench/resilience.py [--quick]`` (``--quick`` finishes well under 60 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

from stalwart.resilience import (
    BreakerConfig,
    BreakerRegistry,
    Policy,
    RetryPolicy,
    TokenBucket,
)

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "resilience.json"
TARGET_US = 20.0


def dependency() -> int:
    return 42


async def adependency() -> int:
    return 42


def percentile(sorted_ns: list[int], q: float) -> float:
    index = min(len(sorted_ns) - 1, round(q * (len(sorted_ns) - 1)))
    return sorted_ns[index] / 1000.0


def time_sync(fn: Callable[[], object], n: int) -> list[int]:
    clock = time.perf_counter_ns
    samples = [0] * n
    for i in range(n):
        start = clock()
        fn()
        samples[i] = clock() - start
    samples.sort()
    return samples


async def time_async(fn: Callable[[], Awaitable[object]], n: int) -> list[int]:
    clock = time.perf_counter_ns
    samples = [0] * n
    for i in range(n):
        start = clock()
        await fn()
        samples[i] = clock() - start
    samples.sort()
    return samples


def summarize(prefix: str, bare: list[int], guarded: list[int]) -> dict[str, float]:
    bare_p50, bare_p99 = percentile(bare, 0.50), percentile(bare, 0.99)
    pol_p50, pol_p99 = percentile(guarded, 0.50), percentile(guarded, 0.99)
    return {
        f"{prefix}bare_p50_us": round(bare_p50, 3),
        f"{prefix}bare_p99_us": round(bare_p99, 3),
        f"{prefix}policy_p50_us": round(pol_p50, 3),
        f"{prefix}policy_p99_us": round(pol_p99, 3),
        f"{prefix}policy_mean_us": round(statistics.fmean(guarded) / 1000.0, 3),
        f"{prefix}overhead_p50_us": round(pol_p50 - bare_p50, 3),
        f"{prefix}overhead_p99_us": round(pol_p99 - bare_p99, 3),
        f"{prefix}overhead_ratio_p50": round(pol_p50 / bare_p50, 1) if bare_p50 else 0.0,
    }


def make_policy(name: str, *, limited: bool = False) -> Policy:
    return Policy(
        name,
        kind="tool",
        retry=RetryPolicy(max_attempts=4, base=0.1, cap=5.0),
        breaker=BreakerConfig(),
        registry=BreakerRegistry(),
        rate_limiter=TokenBucket(1e12, per=1.0) if limited else None,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (CI smoke run)")
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args()
    n = 100_000 if args.quick else 1_000_000
    warmup = n // 10
    started = time.perf_counter()

    policy = make_policy("bench:sync")
    assert policy.call(dependency) == 42, "the policy must return the call's result"
    time_sync(dependency, warmup)
    time_sync(lambda: policy.call(dependency), warmup)
    bare = time_sync(dependency, n)
    guarded = time_sync(lambda: policy.call(dependency), n)
    result: dict[str, object] = summarize("", bare, guarded)

    async def run_async() -> None:
        apolicy = make_policy("bench:async")
        limited = make_policy("bench:async-limited", limited=True)
        await time_async(adependency, warmup)
        await time_async(lambda: apolicy.acall(adependency), warmup)
        abare = await time_async(adependency, n)
        aguarded = await time_async(lambda: apolicy.acall(adependency), n)
        result.update(summarize("async_", abare, aguarded))
        await time_async(lambda: limited.acall(adependency), warmup)
        alimited = await time_async(lambda: limited.acall(adependency), n)
        result.update(
            {
                k.replace("async_", "async_rate_limited_"): v
                for k, v in summarize("async_", abare, alimited).items()
                if "policy" in k or "overhead" in k
            }
        )

    asyncio.run(run_async())
    result.update(
        {
            "samples": n,
            "quick": args.quick,
            "target_overhead_p50_us": TARGET_US,
            "meets_target": float(result["overhead_p50_us"]) < TARGET_US  # type: ignore[arg-type]
            and float(result["async_overhead_p50_us"]) < TARGET_US,  # type: ignore[arg-type]
            "stack": "deadline + classification + retry + breaker + metrics (+ rate limit)",
            "python": platform.python_version(),
            "machine": platform.machine(),
            "seconds": round(time.perf_counter() - started, 1),
        }
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
