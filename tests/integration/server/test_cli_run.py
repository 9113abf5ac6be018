"""`stalwart run` and its HTTP server: a taken port exits 2 at once; --no-http runs without."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

APP = textwrap.dedent(
    """
    from stalwart import ChildSpec, SupervisorSpec
    from stalwart.testing import ProbeAgent

    root = SupervisorSpec("root", [ChildSpec("a", ProbeAgent)])
    """
)


def env_for(tmp_path) -> dict[str, str]:
    (tmp_path / "cli_app.py").write_text(APP)
    return {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def test_a_taken_port_makes_the_node_exit_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "stalwart.cli", "run", "cli_app:root", "--http-port", str(port)],
            capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env_for(tmp_path),
            check=False,
        )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    failed = [json.loads(x) for x in proc.stderr.splitlines() if "node_start_failed" in x]
    assert failed and f"cannot listen on 127.0.0.1:{port}" in failed[0]["error"]
    assert "agent_started" not in proc.stderr  # nothing was started


def test_bad_server_settings_are_a_clear_error(tmp_path):
    env = {**env_for(tmp_path), "STALWART_HTTP_PORT": "eighty"}
    proc = subprocess.run(
        [sys.executable, "-m", "stalwart.cli", "run", "cli_app:root"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "STALWART_HTTP_PORT='eighty' is not a number" in proc.stderr


def test_an_unusable_log_store_makes_the_node_exit_2(tmp_path):
    # A missing directory is created (as for the store); a path under a file cannot be.
    (tmp_path / "a-file").write_text("not a directory")
    proc = subprocess.run(
        [sys.executable, "-m", "stalwart.cli", "run", "cli_app:root", "--http-port", "0",
         "--log-db", str(tmp_path / "a-file" / "logs.db")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env_for(tmp_path),
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "observability service could not start" in proc.stderr
    assert "a-file/logs.db" in proc.stderr  # the message names the log store
