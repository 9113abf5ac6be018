"""`make demo` (the README's first command: `stalwart demo --helpdesk`) runs and tells the
truth about its run."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest


@pytest.mark.timeout(120)
def test_the_demo_kills_an_agent_and_loses_nothing(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "stalwart", "demo", "--helpdesk", "--tickets", "16", "--no-verify"],
        check=False,
        capture_output=True,
        text=True,
        timeout=110,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(pathlib.Path.cwd())},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = " ".join(done.stdout.split())
    assert "was SIGKILLed after ticket" in out and "restarted it" in out
    assert "PASS: nothing lost, nothing delivered twice." in out
    assert "stalwart verify" not in out  # --no-verify
    assert "stalwart init myapp" in out and "make test" not in out  # true for a wheel user
