"""Readiness of a store: does it accept writes, answered within a bound, whatever it does.

:class:`WriteProbe` is the node's ``store`` readiness check. Each run makes one
real write (a meta row; on SQLite after checking the file system has room), with
a short deadline (``timeout``, 0.8 s), so a store that is down, locked, out of
disk or hung reads "not ready" instead of holding /readyz. At most one probe is
in flight; its answer is reused for ``ttl`` seconds (1 s), so a probe storm
against /readyz is one write per second. A probe that outlives its deadline is
left to finish in the background (kept, never duplicated) and the check answers
"not ready" at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any

from stalwart.errors import StoreError

__all__ = ["WriteProbe"]


class WriteProbe:
    """A cached, bounded write probe; call it for ``True`` or the reason it failed."""

    def __init__(
        self,
        probe: Callable[[float], Coroutine[Any, Any, None]],
        *,
        timeout: float = 0.8,
        ttl: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self.timeout = timeout
        self.ttl = ttl
        self._monotonic = monotonic
        self._answer: bool | str | None = None
        self._at = 0.0
        self._inflight: asyncio.Task[None] | None = None

    async def __call__(self) -> bool | str:
        now = self._monotonic()
        if self._answer is not None and now - self._at < self.ttl:
            return self._answer
        if self._inflight is None or self._inflight.done():
            # Owned: one at a time, kept here until it ends, cancelled by close().
            self._inflight = asyncio.get_running_loop().create_task(self._probe(self.timeout))
        answer: bool | str
        try:
            async with asyncio.timeout(self.timeout):
                await asyncio.shield(self._inflight)
            answer = True
        except TimeoutError:
            answer = f"the store did not accept a write within {self.timeout:g} s"
        except StoreError as exc:
            answer = f"the store does not accept writes: {exc}"
        self._answer, self._at = answer, self._monotonic()
        return answer

    async def close(self) -> None:
        task, self._inflight = self._inflight, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
