"""Chaos under load and a soak on the helpdesk example (checklist LC-2 and LC-3).

Full (``make bench``): five minutes of every fault kind mixed under open-loop
load, compared with a fault-free run of the same tasks; then a ten-minute soak
with the trend test. ``--quick``: 40 s of each (under a minute each).

    python bench/chaos.py            # 5 min chaos + 10 min soak
    python bench/chaos.py --quick    # 40 s + 40 s

Writes bench/results/chaos.json; exits 1 if either run failed its checks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import pathlib
import sys
import time
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent))  # examples/

from stalwart.chaos import (  # noqa: E402
    ChaosConfig,
    SoakConfig,
    TargetConfig,
    run_chaos,
    run_soak,
)
from stalwart.observe import configure_logging  # noqa: E402

APP = "examples.helpdesk.app:app"


def _quota() -> int | None:
    import os

    return 64 if os.geteuid() == 0 else None


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    """The result without its bulkiest parts (per-sample series, per-key deliveries)."""
    out = {k: v for k, v in result.items() if k not in ("samples", "side_effects")}
    if "faults" in out and len(out["faults"]) > 40:
        out["faults"] = out["faults"][:40]
    return out


def bench(quick: bool) -> dict[str, Any]:
    """The chaos run, then the soak, each in its own event loop (nothing shared)."""
    chaos_s, soak_s = (40.0, 40.0) if quick else (300.0, 600.0)
    started = time.monotonic()
    chaos = asyncio.run(
        run_chaos(
            ChaosConfig(
                target=TargetConfig(app=APP, quota_mb=_quota()), duration=chaos_s, rate=10.0
            ),
            progress=lambda m: print(m, file=sys.stderr, flush=True),
        )
    )
    print(f"chaos: {chaos['submitted']} tasks, lost {chaos['lost']}, duplicates "
          f"{chaos['duplicate_side_effects']}, match {chaos['results_match_fault_free']}, "
          f"passed {chaos['passed']}", flush=True)  # fmt: skip
    soak = asyncio.run(
        run_soak(SoakConfig(target=TargetConfig(app=APP), duration=soak_s, rate=5.0))
    )
    print(f"soak: {soak['submitted']} tasks, flagged {soak['flagged']}, passed {soak['passed']}",
          flush=True)  # fmt: skip
    return {
        "mode": "quick" if quick else "full",
        "seconds": round(time.monotonic() - started, 1),
        "chaos": _brief(chaos),
        "soak": _brief(soak),
        "passed": bool(chaos["passed"] and soak["passed"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 s of each")
    parser.add_argument("--out", default=str(HERE / "results" / "chaos.json"))
    args = parser.parse_args()
    configure_logging(level=logging.WARNING, json=False, stream=sys.stderr)
    result = bench(args.quick)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    raise SystemExit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
