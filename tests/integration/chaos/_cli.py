"""Run ``stalwart chaos|load|soak`` as a process (as a user would) and read its JSON."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[3]
FIELDS = (
    "submitted",
    "completed",
    "failed",
    "lost",
    "duplicate_side_effects",
    "results_match_fault_free",
    "latency_s",
    "faults",
)


def run_cli(tmp_path: pathlib.Path, *args: str, timeout: float) -> tuple[int, dict[str, Any], str]:
    """Exit code, the JSON written with --out, and the table printed.

    Output goes to files, not pipes (a pipe would also wait for any process that
    inherited it); on timeout the whole process group is killed and its log shown.
    """
    out = tmp_path / f"{args[0]}.json"
    stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(stdout, "w") as o, open(stderr, "w") as e:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stalwart.cli._chaos",
                *args,
                "--drain",
                "40s",
                "--out",
                str(out),
            ],
            cwd=ROOT,
            stdout=o,
            stderr=e,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()  # SIGTERM first: the command undoes its faults and unmounts
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            log = stderr.read_text()[-4000:]
            raise AssertionError(f"{args[0]} ran past {timeout} s:\n{log}") from None
    assert out.exists(), f"no JSON written (exit {code}):\n{stderr.read_text()[-4000:]}"
    result = json.loads(out.read_text())
    for field in FIELDS:
        assert field in result, field
    for p in ("p50", "p95", "p99"):
        assert p in result["latency_s"]
    return code, result, stdout.read_text()
