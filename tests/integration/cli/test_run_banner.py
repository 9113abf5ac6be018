"""`stalwart run` on a terminal (a pseudo-terminal): a start-up banner saying where the
dashboard, API and metrics listen, the store, the agents and the token's status, then
readable log lines; with `--log-format json` JSON lines and no banner. Off a terminal
lines are JSON (tests/integration/server/test_logs_run.py parses every one)."""

from __future__ import annotations

import json
import os
import pathlib
import pty
import re
import select
import signal
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[3]
TOKEN = "banner-test-token-0123456789"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Terminal:
    """`stalwart ...` with stdout and stderr on a pseudo-terminal; ``read_until`` reads it."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stalwart.cli", *args],
            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=ROOT, env=env,
            start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        self.text = ""

    def read_until(self, needle: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            left = deadline - time.monotonic()
            assert left > 0, f"{needle!r} never came; the terminal showed:\n{self.text}"
            ready, _, _ = select.select([self.master], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the process closed the terminal
                chunk = b""
            assert chunk, f"the process ended before {needle!r}:\n{self.text}"
            self.text += ANSI.sub("", chunk.decode(errors="replace").replace("\r\n", "\n"))
        return self.text

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            os.close(self.master)


def env_for(tmp_path: pathlib.Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STALWART_")}
    env["STALWART_VAULT"] = str(tmp_path / "vault.enc")  # the sim's key, off the checkout
    return env | extra


def test_the_banner_names_the_urls_store_agents_and_token(tmp_path):
    store = f"sqlite:///{tmp_path}/banner.db"
    term = Terminal(
        "run", "examples/helpdesk/helpdesk.toml", "--store", store, "--http-port", "0",
        "--log-db", str(tmp_path / "logs.db"),
        env=env_for(tmp_path, STALWART_API_TOKEN=TOKEN),
    )  # fmt: skip
    try:
        text = term.read_until("Ctrl-C stops the node")
    finally:
        code = term.stop()
    assert code == 0, text
    banner = text[text.index("stalwart ") :]
    banner = banner[banner.index("is running examples/helpdesk/helpdesk.toml") :]
    url = re.search(r"dashboard\s+(http://127\.0\.0\.1:(\d+))/", banner)
    assert url, banner
    assert url.group(2) != "0"  # the bound port, not the requested 0
    assert f"API        {url.group(1)}/v1" in banner
    assert re.search(rf"metrics\s+{re.escape(url.group(1))}/metrics\n", banner)
    assert re.search(r"API token\s+required \(set\)", banner)
    assert TOKEN not in text  # the token's status, never its value
    assert re.search(rf"store\s+{re.escape(store)}", banner)
    assert re.search(r"agents\s+triage, resolver", banner)
    assert re.search(r"simulator\s+http://127\.0\.0\.1:\d+", banner)
    # readable lines, not JSON: the console renderer's `level` column, `event` first
    lines = [x for x in text.splitlines() if "agent_started" in x]
    assert lines and not any(x.lstrip().startswith("{") for x in lines), text
    assert any(re.search(r"\[info\s*\]\s+agent_started", x) for x in lines), lines


def test_json_on_a_terminal_when_asked_and_no_banner(tmp_path):
    term = Terminal(
        "run", "examples/helpdesk/helpdesk.toml", "--store", f"sqlite:///{tmp_path}/j.db",
        "--no-http", "--log-format", "json",
        env=env_for(tmp_path),
    )  # fmt: skip
    try:
        text = term.read_until('"node_started"')
    finally:
        code = term.stop()
    assert code == 0, text
    assert "Ctrl-C stops the node" not in text
    for line in filter(None, text.splitlines()):
        json.loads(line)  # every line is JSON
