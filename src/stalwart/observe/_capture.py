"""What agent code prints becomes structured, redacted log lines, never raw output.

Two layers, so no line escapes and none is lost:

- :func:`capture_std_streams`, in each agent process: ``sys.stdout`` and
  ``sys.stderr`` become :class:`LineWriter` objects. Every complete line a
  ``print()`` or ``sys.stderr.write`` produces is logged at once as event
  ``agent_output`` (``stream``: ``stdout`` or ``stderr``, ``text``: the line), with
  the task, step and trace of the code that printed it, through the process's
  redactor and on to the node like any log line. A partial line is kept until its
  newline, :meth:`LineWriter.flush` at exit, or :data:`MAX_LINE` characters.
- :class:`OutputPipe`, in the node: the fork server (and so every agent process,
  which inherits them) writes its file descriptors 1 and 2 into pipes the node
  reads on its event loop without blocking. What bypasses ``sys.stdout`` (a C
  library, ``os.write(1, ...)``, a subprocess, the interpreter's last traceback)
  is logged line by line as ``agent_output`` with ``raw: true``, through the node's
  redactor. The pipes are drained to their end, so lines written just before a
  process dies are still logged. A process writing faster than the node reads waits
  on the full pipe (back-pressure); the node's loop never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from stalwart.observe._logging import get_logger

__all__ = ["MAX_LINE", "LineWriter", "OutputPipe", "capture_std_streams"]

MAX_LINE = 16 * 1024
"""Longest line kept whole; a longer one is logged in pieces of this many characters."""

_log = get_logger("stalwart.output")
_IN_WRITE = threading.local()


class LineWriter(io.TextIOBase):
    """A text stream whose every complete line is logged (see the module docstring).

    ``fallback`` receives text written while a line is being logged (the logging
    pipeline itself failing and printing): it must not come back here.
    """

    def __init__(self, stream: str, fallback: Any) -> None:
        super().__init__()
        self.stream = stream
        self._fallback = fallback
        self._buf: list[str] = []
        self._size = 0
        self._lock = threading.RLock()
        self.lines = 0

    # a TextIO's attributes code reads (print, logging.StreamHandler, faulthandler)
    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return "replace"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return int(self._fallback.fileno())

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if getattr(_IN_WRITE, "active", False):  # the logging pipeline printed: pass it on
            with contextlib.suppress(Exception):
                self._fallback.write(text)
            return len(text)
        with self._lock:
            lines: list[str] = []
            start = 0
            while True:
                nl = text.find("\n", start)
                if nl < 0:
                    break
                self._buf.append(text[start:nl])
                lines.append("".join(self._buf))
                self._buf, self._size = [], 0
                start = nl + 1
            rest = text[start:]
            if rest:
                self._buf.append(rest)
                self._size += len(rest)
                if self._size >= MAX_LINE:
                    lines.append("".join(self._buf))
                    self._buf, self._size = [], 0
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        """Log the partial line, if any (called at exit: nothing printed is lost)."""
        with self._lock:
            line = "".join(self._buf)
            self._buf, self._size = [], 0
        if line:
            self._emit(line)

    def _emit(self, line: str) -> None:
        if not line.strip():
            return  # a blank line carries nothing to log
        _IN_WRITE.active = True
        try:
            for i in range(0, max(len(line), 1), MAX_LINE):
                piece = line[i : i + MAX_LINE]
                if self.stream == "stderr":
                    _log.warning("agent_output", stream=self.stream, text=piece)
                else:
                    _log.info("agent_output", stream=self.stream, text=piece)
                self.lines += 1
        finally:
            _IN_WRITE.active = False


def capture_std_streams() -> Callable[[], None]:
    """Replace ``sys.stdout``/``sys.stderr`` with :class:`LineWriter` objects; returns a
    function that flushes them and puts the originals back."""
    old_out, old_err = sys.stdout, sys.stderr
    # what bypasses the writers (fileno() for a subprocess, faulthandler, a line written
    # while one is being logged) goes to the process's own descriptor of the same stream
    out = LineWriter("stdout", sys.__stdout__ if sys.__stdout__ is not None else old_out)
    err = LineWriter("stderr", sys.__stderr__ if sys.__stderr__ is not None else old_err)
    sys.stdout, sys.stderr = out, err

    def restore() -> None:
        out.flush()
        err.flush()
        if sys.stdout is out:
            sys.stdout = old_out
        if sys.stderr is err:
            sys.stderr = old_err

    return restore


class OutputPipe:
    """One pipe whose write end a child process gets as its fd 1 or 2; the node reads
    it on the event loop (non-blocking) and logs each line as ``agent_output``."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self._partial = b""
        self._loop: asyncio.AbstractEventLoop | None = None
        self.lines = 0
        self.closed = False
        self._done = asyncio.Event()

    def start(self) -> None:
        """Start reading (on the running loop); call after the child got ``write_fd``."""
        os.close(self.write_fd)  # the child holds it now: EOF when the last writer ends
        self.write_fd = -1
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.read_fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.read_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        if len(self._partial) >= MAX_LINE:
            lines.append(self._partial)
            self._partial = b""
        for line in lines:
            self._emit(line)

    def _emit(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        if not text.strip():
            return
        for i in range(0, max(len(text), 1), MAX_LINE):
            _log.warning("agent_output", stream=self.stream, raw=True, text=text[i : i + MAX_LINE])
            self.lines += 1

    async def drained(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until every writer has closed and all is read."""
        try:
            async with asyncio.timeout(timeout):
                await self._done.wait()
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """Stop reading; the partial last line (no newline before the end) is logged."""
        if self.closed:
            return
        self.closed = True
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.read_fd)
        if self._partial:
            self._emit(self._partial)
            self._partial = b""
        for fd in (self.read_fd, self.write_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.read_fd = self.write_fd = -1
        self._done.set()
