"""A second node of the same app, in its own process group, for the ``node_kill`` fault.

The chaos run's own node runs in-process (so the command can watch it); killing
a *whole* node -- the node process, its fork server and every agent at once --
needs a node in another process. :class:`PeerNode` starts ``stalwart run APP
--store STORE --no-http`` against the same store and the same sim (through the
fault proxy when there is one), so both nodes claim the run's tasks. SIGKILLing
the peer's process group is a node crash: its tasks' leases expire and the
other node takes them over; after the fault's duration the peer is started
again (a new incarnation, with a new node id), which is the fault's undo.

The peer is stopped (SIGTERM, then SIGKILL of its group after a deadline) when
the run ends, and SIGKILLed from ``atexit`` if the command exits first.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

from stalwart.errors import StartError

__all__ = ["PeerNode"]


class PeerNode:
    """``stalwart run`` of the app in a new session (see the module docstring)."""

    def __init__(self, app: str, store: str, sim_url: str | None) -> None:
        self.app = app
        self.store = store
        self.sim_url = sim_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.node_id = ""
        self.incarnations = 0
        self.kills = 0
        self.closing = False  # set when the run ends: a node_kill's undo then restarts nothing
        self._log = pathlib.Path(tempfile.mkstemp(prefix="stalwart-chaos-peer-", suffix=".log")[1])

    def start(self, timeout: float = 60.0) -> None:
        """Start an incarnation and wait (bounded) for its ``node_started`` line."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        if self.sim_url:
            env["STALWART_SIM_URL"] = self.sim_url
        offset = self._log.stat().st_size
        with open(self._log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stalwart.cli", "run", self.app, "--store", self.store,
                 "--no-http"],
                stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=os.getcwd(),
                start_new_session=True,
            )  # fmt: skip
        self.incarnations += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartError(f"the peer node exited ({self.proc.returncode}): {self.tail()}")
            with open(self._log, "rb") as log:
                log.seek(offset)
                for line in log:
                    with contextlib.suppress(ValueError):
                        event = json.loads(line)
                        if isinstance(event, dict) and event.get("event") == "node_started":
                            self.node_id = str(event.get("node", ""))
                            return
            time.sleep(0.05)  # the log file offers nothing to wait on: poll, bounded
        raise StartError(f"the peer node did not start within {timeout:g} s: {self.tail()}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> int:
        """SIGKILL the whole process group (node, fork server, agents); returns the pid."""
        assert self.proc is not None
        pid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self.kills += 1
        return pid

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, wait (bounded), then SIGKILL whatever is left of the group."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def close(self) -> None:
        self.closing = True
        self.stop()
        self._log.unlink(missing_ok=True)

    def tail(self, size: int = 2000) -> str:
        try:
            return self._log.read_bytes()[-size:].decode(errors="replace")
        except OSError:
            return ""
