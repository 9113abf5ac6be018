"""A fork server with the runtime preloaded: agent processes start in milliseconds.

Why not ``fork`` from the node, ``spawn``, or ``multiprocessing``'s forkserver
(measured in ``bench/runtime.py``, discussed in ``docs/runtime.md``):

- forking the node copies a process with threads, an event loop and open
  sockets: unsafe, and every child inherits all of it;
- ``spawn`` starts a fresh interpreter and re-imports everything: ~100x slower
  and no memory shared between agents;
- ``multiprocessing``'s forkserver pickles a Process object per start and
  re-runs the parent's ``__main__`` module in every child (under pytest that
  imports pytest into each agent), and reports exits only through its own
  Process objects.

This server is a small single-threaded process started by the node. It imports
the runtime (and any modules the app asks to preload), freezes the GC so forked
children share those pages copy-on-write, then serves two kinds of traffic on
one socket to the node:

- ``spawn`` requests (msgpack, with the agent's socket passed as SCM_RIGHTS):
  it forks, and the child becomes the agent; the reply carries the pid.
- ``exited`` notices it sends when ``SIGCHLD`` says a child ended, with the exact
  wait status (it is the parent, so it is the one that can reap it).

Every child asks the kernel to SIGKILL it if the fork server dies
(``PR_SET_PDEATHSIG``), and the fork server does the same for the node, so no
agent outlives its node. When the node's socket closes, the server kills its
children and exits.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import os
import selectors
import signal
import socket
import struct
import sys
import threading
from typing import Any

import msgspec

__all__ = ["BOOT", "die_with_parent", "main", "pack", "set_parent_death_signal"]

_HDR = struct.Struct(">I")
_PR_SET_PDEATHSIG = 1


def pack(obj: Any) -> bytes:
    body = msgspec.msgpack.encode(obj)
    return _HDR.pack(len(body)) + body


def _find_prctl() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: the channel-EOF rule still applies
        return None


_prctl = _find_prctl()
"""Looked up once, at import: a forked agent then asks for its parent-death signal
without a ``dlopen``, which could block on a loader lock that another thread of the fork
server held at the fork. (Three agents were once found after a test run orphaned and
blocked on a futex; whether this was the lock is not confirmed.)"""


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``sig`` to this process when its parent exits."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def die_with_parent(parent: int, sig: int = signal.SIGKILL) -> bool:
    """Ask for ``sig`` when the parent exits; False if ``parent`` is already gone.

    For a process just forked (or started) by ``parent``: the parent-death signal only
    covers a parent that exits *after* the request, so one that died in between (this
    process is already reparented, to init or a subreaper) is found by ``getppid()``,
    and the caller must exit at once instead of living on as an orphan."""
    set_parent_death_signal(sig)
    return os.getppid() == parent


def _thread_count() -> int:
    """Threads of this process now, as the kernel counts them (C threads included)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # not Linux
        return threading.active_count()


def _recv_exact(sock: socket.socket, n: int, fds: list[int]) -> bytes:
    buf = b""
    while len(buf) < n:
        data, new_fds, _flags, _addr = socket.recv_fds(sock, n - len(buf), 4)
        if not data:
            raise EOFError
        fds.extend(new_fds)
        buf += data
    return buf


def _become_agent(
    control: socket.socket, wake_r: int, wake_w: int, fds: list[int], req: Any, *, server: int
) -> int:
    # first: whatever follows, the child dies with its fork server (or, if that already
    # died between the fork and here, at once: no signal would ever come)
    if not die_with_parent(server):
        return 1
    from stalwart.runtime._child import SpawnRequest, run_agent

    control.close()
    os.close(wake_r)
    os.close(wake_w)
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the node's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # The preloaded objects stay frozen: unfreezing would let the next full collection
    # walk (and so copy) every inherited page.
    try:
        pulse = socket.socket(fileno=fds[1]) if len(fds) > 1 else None
        return run_agent(socket.socket(fileno=fds[0]), SpawnRequest(**req), pulse)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        return 1


def _preload_agent_module(agent_ref: str, preloaded: set[str]) -> None:
    """Import an agent's module here once, so every child forked after shares it.

    Without this each child would import it after the fork: slower starts (tens of
    ms for a module with dependencies) and private copies of the same pages.
    A module that fails to import is left to the child, which reports the error.
    """
    from stalwart.runtime._spec import load_agent

    module = agent_ref.rpartition(":")[0]
    if not module or module in preloaded:
        return
    preloaded.add(module)
    try:
        load_agent(agent_ref)
    except BaseException:  # the child will raise it again, with context, as InitFailed
        return
    gc.collect()
    gc.freeze()


def main(control_fd: int, preload: list[str], parent: int | None = None) -> None:
    """Serve the node on ``control_fd``. ``parent``: the node's pid (the server exits at
    once if it is not its parent any more: the node died before the server asked for its
    parent-death signal; the command line the node runs asks even earlier, see
    :data:`BOOT`)."""
    if not die_with_parent(os.getppid() if parent is None else parent):
        os._exit(0)
    # The node alone decides when agents stop. A SIGINT or SIGTERM sent to the whole
    # process group (Ctrl-C, `timeout`, systemd's control-group kill) must not take the
    # fork server down before the node has stopped its tree in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    control = socket.socket(fileno=control_fd)
    control.setblocking(True)
    importlib.import_module("stalwart.runtime._child")
    from stalwart.observe import preload_tracing

    preload_tracing()  # when OTEL_* turns tracing on, agents start with the SDK loaded
    # Every agent redacts its log lines; the first redaction loads the fast tier's name and
    # place lists (~0.2 s of CPU). Loaded here once, shared copy-on-write; left to each
    # agent, it ran on the agent's event loop at its first log line, and on a saturated
    # machine held the loop past a short hang threshold (the agent was killed as hung).
    from stalwart.guard import default_redactor

    default_redactor().redact("Warm-up: Ada Lovelace, 12 Baker Street, London.")
    for name in preload:
        importlib.import_module(name)
    # The garbage collector is off from the start of the imports (BOOT) to here: every
    # collection meanwhile walked the objects loaded so far (the lists' sets, the
    # model's tables) to free little, and the one below frees what cycles there are
    # before the freeze. The fork server of a helpdesk node, from its start to the node's
    # readiness: 1.87 s of CPU against 2.00 s with it on, the model turned off (medians
    # of 6 node starts, alternated with the tree before, 2026-12-07); with the model,
    # 4.04 against 4.07 s, no difference.
    gc.collect()
    gc.freeze()  # keep the GC from touching (and so copying) preloaded pages in children
    gc.enable()
    preloaded: set[str] = set(preload)

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: set[int] = set()
    sel = selectors.DefaultSelector()
    sel.register(control, selectors.EVENT_READ, "control")
    sel.register(wake_r, selectors.EVENT_READ, "wake")
    control.sendall(pack({"op": "hello", "pid": os.getpid()}))
    server = os.getpid()
    warned = False

    def reap() -> None:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            children.discard(pid)
            control.sendall(
                pack({"op": "exited", "pid": pid, "code": os.waitstatus_to_exitcode(status)})
            )

    try:
        while True:
            for key, _ in sel.select():  # no-deadline: serves until the node closes us
                if key.data == "wake":
                    try:
                        os.read(wake_r, 512)
                    except BlockingIOError:
                        pass
                    reap()
                    continue
                fds: list[int] = []
                (length,) = _HDR.unpack(_recv_exact(control, _HDR.size, fds))
                req = msgspec.msgpack.decode(_recv_exact(control, length, fds))
                if req["op"] == "spawn" and len(fds) in (1, 2):
                    _preload_agent_module(req["request"].get("agent_ref", ""), preloaded)
                    # One thread, always: a fork copies only this one, and a lock another
                    # held would stay held in the agent for ever. Only an app module that
                    # starts a thread at import breaks it: said once, loudly.
                    before = _thread_count()
                    pid = os.fork()
                    if pid == 0:
                        os._exit(
                            _become_agent(
                                control, wake_r, wake_w, fds, req["request"], server=server
                            )
                        )
                    children.add(pid)
                    # Counted again after the fork: a pool that its library stops before
                    # every fork (its pthread_atfork handler) held no lock across it.
                    # numpy's OpenBLAS starts one such worker at import (the output
                    # tier's model imports numpy); counted before the fork alone, it made
                    # every node with the model installed print this warning at its first
                    # agent, for a fork that was safe.
                    threads = min(before, _thread_count())
                    if threads > 1 and not warned:
                        warned = True
                        print(
                            f"stalwart fork server: {threads} threads at fork (a preloaded "
                            "module started threads at import); forked agents may block "
                            "on locks those threads held",
                            file=sys.stderr,
                            flush=True,
                        )
                    for fd in fds:
                        os.close(fd)
                    control.sendall(
                        pack({"op": "spawned", "id": req["id"], "pid": pid, "threads": threads})
                    )
                else:
                    for fd in fds:
                        os.close(fd)
                    control.sendall(pack({"op": "error", "id": req.get("id"), "error": "bad"}))
            reap()
    except (EOFError, ConnectionError):
        pass
    finally:
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


BOOT = (
    "import ctypes, os, sys\n"
    "try:\n"
    "    ctypes.CDLL(None).prctl(1, 9, 0, 0, 0)\n"  # PR_SET_PDEATHSIG, SIGKILL
    "except (OSError, AttributeError):\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[3]):\n"
    "    os._exit(0)\n"
    "import gc\n"
    "gc.disable()\n"  # until the preloads are frozen (main)
    "from stalwart.runtime._forkserver import main\n"
    "main(int(sys.argv[1]), [m for m in sys.argv[2].split(',') if m], int(sys.argv[3]))\n"
)
"""The fork server's program (``python -c BOOT control_fd preload node_pid``). It asks
for its parent-death signal and checks its parent before importing anything: importing
the runtime takes from 0.2 s to seconds on a busy machine, and a node killed meanwhile
left fork servers orphaned (found after verify's LC-2 on the warehouse app)."""


if __name__ == "__main__":
    main(
        int(sys.argv[1]),
        [m for m in sys.argv[2].split(",") if m] if len(sys.argv) > 2 else [],
        int(sys.argv[3]) if len(sys.argv) > 3 else None,
    )
