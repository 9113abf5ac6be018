"""The node's side of the fork server: start it, ask for children, hear of exits."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from stalwart.errors import StartError
from stalwart.observe import OutputPipe
from stalwart.runtime._child import SpawnRequest
from stalwart.runtime._forkserver import BOOT, pack

__all__ = ["ForkServer"]

_HDR = struct.Struct(">I")


class ForkServer:
    """A running fork server process and the socket to it.

    ``on_exit(pid, code)`` is called (in the event loop) for every child that
    ends, with ``code`` as :func:`os.waitstatus_to_exitcode` gives it (negative:
    killed by that signal). ``on_lost()`` is called once if the server itself
    dies; its children die with it (PR_SET_PDEATHSIG).
    """

    def __init__(
        self,
        on_exit: Callable[[int, int], None],
        on_lost: Callable[[], None],
        preload: Sequence[str] = (),
    ) -> None:
        self._on_exit = on_exit
        self._on_lost = on_lost
        self._preload = list(preload)
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[int]] = {}
        self._buf = bytearray()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._hello: asyncio.Future[int] | None = None
        self.pid: int | None = None
        self.disowned: set[int] = set()
        """Children spawned for a request nobody waited for any more, killed, not yet
        reported exited."""
        self.killed_unclaimed = 0
        self.threads_at_fork = 0
        """The most threads the server had at a fork, counting only those still running
        after it (1 unless a preloaded module started some at import: then it also says so
        on its stderr, which the node logs; a pool its library stops before every fork,
        as numpy's OpenBLAS does, is not counted)."""
        self._output: tuple[OutputPipe, ...] = ()

    async def start(self, timeout: float) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        # What the server and its agents write to fds 1 and 2 (C code, subprocesses, a
        # dying interpreter's traceback) is read here and logged redacted, never passed on
        out, err = OutputPipe("stdout"), OutputPipe("stderr")
        self._output = (out, err)
        # Popen only forks+execs; it does not wait, so it cannot block the loop for long.
        self._proc = subprocess.Popen(  # noqa: ASYNC220
            [
                sys.executable,
                "-c",
                BOOT,
                str(theirs.fileno()),
                ",".join(self._preload),
                str(os.getpid()),
            ],
            pass_fds=(theirs.fileno(),),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out.write_fd,
            stderr=err.write_fd,
        )
        theirs.close()
        out.start()
        err.start()
        ours.setblocking(False)
        self._sock = ours
        loop = asyncio.get_running_loop()
        self._hello = loop.create_future()
        loop.add_reader(ours.fileno(), self._readable)
        try:
            async with asyncio.timeout(timeout):
                self.pid = await self._hello
        except TimeoutError:
            self.close()
            raise StartError(f"the fork server did not start within {timeout:g} s") from None

    def _readable(self) -> None:
        assert self._sock is not None
        try:
            data = self._sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost()
            return
        self._buf += data
        while len(self._buf) >= _HDR.size:
            (length,) = _HDR.unpack_from(self._buf)
            if len(self._buf) < _HDR.size + length:
                break
            msg: dict[str, Any] = msgspec.msgpack.decode(
                bytes(self._buf[_HDR.size : _HDR.size + length])
            )
            del self._buf[: _HDR.size + length]
            self._dispatch(msg)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "exited":
            pid = int(msg["pid"])
            if pid in self.disowned:  # killed here, unknown to the node: nobody to tell
                self.disowned.discard(pid)
                return
            self._on_exit(pid, int(msg["code"]))
        elif op == "spawned":
            pid = int(msg["pid"])
            self.threads_at_fork = max(self.threads_at_fork, int(msg.get("threads", 1)))
            fut = self._waiting.pop(int(msg["id"]), None)
            if fut is not None and not fut.done():
                fut.set_result(pid)
                return
            # Its requester gave up (its start_timeout passed, or it was cancelled): no
            # one will ever talk to this child or stop it, and it may be blocked (its
            # channel's EOF is all that would end it). Kill it by pid; the server reaps it.
            self.disowned.add(pid)
            self.killed_unclaimed += 1
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        elif op == "hello":
            if self._hello is not None and not self._hello.done():
                self._hello.set_result(int(msg["pid"]))
        elif op == "error":
            fut = self._waiting.pop(int(msg.get("id") or 0), None)
            if fut is not None and not fut.done():
                fut.set_exception(StartError(f"fork server refused the request: {msg}"))

    def _lost(self) -> None:
        was_running = self._sock is not None
        self.close()
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(StartError("the fork server died"))
        self._waiting.clear()
        if was_running:
            self._on_lost()

    async def spawn(
        self,
        request: SpawnRequest,
        child_sock: socket.socket,
        timeout: float,
        pulse_sock: socket.socket | None = None,
    ) -> int:
        """Fork an agent that will own ``child_sock`` (and ``pulse_sock``); return its pid."""
        if self._sock is None:
            raise StartError("the fork server is not running")
        req_id = next(self._ids)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[req_id] = fut
        data = pack({"op": "spawn", "id": req_id, "request": dataclasses.asdict(request)})
        try:
            # The fd must travel with the first bytes; the request is small, so one
            # sendmsg on an idle local socket does not block. A full buffer would
            # raise BlockingIOError, reported as a failed start.
            fds = [child_sock.fileno()] + ([] if pulse_sock is None else [pulse_sock.fileno()])
            sent = socket.send_fds(self._sock, [data], fds)
            if sent < len(data):
                self._sock.setblocking(True)
                self._sock.settimeout(timeout)
                try:
                    self._sock.sendall(data[sent:])
                finally:
                    self._sock.setblocking(False)
            async with asyncio.timeout(timeout):
                return await fut
        except (TimeoutError, OSError) as exc:
            raise StartError(f"fork server did not spawn {request.name!r}: {exc!r}") from None
        finally:
            self._waiting.pop(req_id, None)

    def close(self) -> None:
        """Close the socket; the server kills its children and exits."""
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                asyncio.get_running_loop().remove_reader(sock.fileno())
            except RuntimeError:
                pass
            sock.close()

    async def drain_output(self, timeout: float) -> bool:
        """Log what the server and its agents wrote to fds 1 and 2 until every one of them
        has closed them (bounded by ``timeout``; then the pipes are closed). True if all
        was read."""
        done = True
        for pipe in self._output:
            done = await pipe.drained(timeout) and done
            pipe.close()
        return done

    def wait_exited(self, timeout: float) -> None:
        """Wait (bounded) for the server process to end; kill it past ``timeout``."""
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the server (tests of the node's reaction use this)."""
        if self._proc is not None:
            self._proc.kill()
