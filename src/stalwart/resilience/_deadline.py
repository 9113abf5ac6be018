"""Deadlines that propagate through nested calls.

A :class:`Deadline` is an instant on a :class:`~stalwart.clock.Clock`'s
monotonic time line. The *current* deadline lives in a :mod:`contextvars`
variable, so it follows the call stack, ``asyncio`` tasks (each task copies the
context it was created in) and :func:`asyncio.to_thread`, without being passed
by hand.

The one rule: **a call never waits past its parent's deadline.** Every scope
opened inside another gets the earlier of its own deadline and its parent's;
:func:`effective_timeout` turns that into the number of seconds to hand to a
blocking API (``httpx``, ``subprocess``, ``queue.get``…).

Enforcement differs by the kind of code, because Python cannot interrupt a
running synchronous function:

- ``async with deadline_scope(...)`` *enforces* the deadline: the body is
  cancelled when it expires and :class:`~stalwart.errors.DeadlineExceeded` is
  raised (the timer runs on the event loop's clock).
- ``with deadline_scope(...)`` *propagates* it: code inside must pass
  :func:`effective_timeout` to whatever it blocks on.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from types import TracebackType

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.config import Timeouts
from stalwart.errors import ConfigError, DeadlineExceeded

__all__ = [
    "Deadline",
    "current_deadline",
    "deadline_scope",
    "default_timeouts",
    "effective_timeout",
    "set_default_timeouts",
]

_CURRENT: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "stalwart_deadline", default=None
)

_default_timeouts = Timeouts()


def set_default_timeouts(timeouts: Timeouts) -> None:
    """Install the per-kind timeouts used when a caller names only a ``kind``.

    The node calls this once at start-up with the configured
    :class:`~stalwart.config.Timeouts` (which rejected out-of-range values when
    it was built).
    """
    global _default_timeouts  # noqa: PLW0603 - process-wide setting, set once at start-up
    if not isinstance(timeouts, Timeouts):
        raise ConfigError(f"set_default_timeouts expects a Timeouts, got {type(timeouts).__name__}")
    _default_timeouts = timeouts


def default_timeouts() -> Timeouts:
    """The per-kind timeouts in force (see :func:`set_default_timeouts`)."""
    return _default_timeouts


class Deadline:
    """An absolute point in time on ``clock``'s monotonic line after which work must stop.

    Immutable and cheap. Build one with :meth:`after`; ask it :meth:`remaining`.
    """

    __slots__ = ("_at", "_clock")

    def __init__(self, at: float, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._at = at
        self._clock = clock

    @classmethod
    def after(cls, seconds: float, *, clock: Clock = SYSTEM_CLOCK) -> Deadline:
        """A deadline ``seconds`` from now on ``clock``. ``seconds`` must be finite and >= 0."""
        if not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
            raise ValueError(
                f"Deadline.after: seconds must be a finite number >= 0, got {seconds!r}"
            )
        return cls(clock.monotonic() + seconds, clock=clock)

    @property
    def at(self) -> float:
        """The instant, in the clock's monotonic seconds."""
        return self._at

    @property
    def clock(self) -> Clock:
        """The clock this deadline is measured on."""
        return self._clock

    def remaining(self) -> float:
        """Seconds left, never negative (0.0 once expired)."""
        left = self._at - self._clock.monotonic()
        return left if left > 0.0 else 0.0

    @property
    def expired(self) -> bool:
        """True once the deadline has passed."""
        return self._clock.monotonic() >= self._at

    def check(self, operation: str = "operation") -> None:
        """Raise :class:`DeadlineExceeded` if the deadline has passed."""
        if self._clock.monotonic() >= self._at:
            raise DeadlineExceeded(f"{operation}: deadline exceeded before it could start")

    def earliest(self, other: Deadline | None) -> Deadline:
        """The earlier of ``self`` and ``other`` (by time remaining, so clocks may differ)."""
        if other is None or other is self:
            return self
        if other._clock is self._clock:
            return self if self._at <= other._at else other
        return self if self.remaining() <= other.remaining() else other

    def __repr__(self) -> str:
        return f"Deadline(remaining={self.remaining():.3f}s)"


def current_deadline() -> Deadline | None:
    """The deadline in force for the running code, or ``None`` if no scope set one."""
    return _CURRENT.get()


def _own_seconds(timeout: float | None, kind: str | None) -> float | None:
    if timeout is not None:
        if not isinstance(timeout, int | float) or not math.isfinite(timeout) or timeout < 0:
            raise ValueError(f"timeout must be a finite number of seconds >= 0, got {timeout!r}")
        return float(timeout)
    if kind is not None:
        return _default_timeouts.for_kind(kind)
    return None


def effective_timeout(kind: str | None = None, *, timeout: float | None = None) -> float:
    """Seconds a blocking call may wait now: ``min(own timeout, enclosing deadline's remaining)``.

    ``own timeout`` is ``timeout`` if given, else the configured default for
    ``kind`` (``"model"``, ``"tool"``, ``"health"``…). With neither, the
    enclosing deadline alone decides; with neither and no enclosing deadline
    there is nothing to bound the wait, which is a :class:`TypeError` (there is
    no "forever"). Raises :class:`DeadlineExceeded` if the enclosing deadline
    has already passed, so nothing starts that cannot finish in time.
    """
    own = _own_seconds(timeout, kind)
    parent = _CURRENT.get()
    if parent is None:
        if own is None:
            raise TypeError(
                "effective_timeout() needs kind= or timeout= when no deadline_scope is active"
            )
        return own
    left = parent.remaining()
    if left <= 0.0:
        raise DeadlineExceeded("the enclosing deadline has expired; not starting a new wait")
    return left if own is None or left < own else own


class deadline_scope:  # lower-case: used like a function, ``with deadline_scope(5): ...``
    """Run a block under a deadline: the earlier of its own and the enclosing one.

    ``timeout`` is seconds (or a ready :class:`Deadline`); ``kind`` names an
    operation kind whose configured default is used when ``timeout`` is not
    given. Entering raises :class:`DeadlineExceeded` at once if the effective
    deadline has already passed. The scope yields the effective
    :class:`Deadline`.

    ``with`` propagates the deadline; ``async with`` also enforces it (see the
    module docstring).
    """

    __slots__ = ("_clock", "_deadline", "_kind", "_timeout", "_timer", "_token")

    def __init__(
        self,
        timeout: float | Deadline | None = None,
        *,
        kind: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if timeout is None and kind is None:
            raise TypeError("deadline_scope() needs a timeout or a kind")
        self._timeout = timeout
        self._kind = kind
        self._clock = clock
        self._deadline: Deadline | None = None
        self._token: contextvars.Token[Deadline | None] | None = None
        self._timer: asyncio.Timeout | None = None

    def _resolve(self) -> Deadline:
        parent = _CURRENT.get()
        if isinstance(self._timeout, Deadline):
            own = self._timeout
        else:
            seconds = _own_seconds(self._timeout, self._kind)
            assert seconds is not None  # guaranteed by __init__
            own = Deadline(self._clock.monotonic() + seconds, clock=self._clock)
        effective = own.earliest(parent)
        if effective.expired:
            what = f"{self._kind} operation" if self._kind else "operation"
            raise DeadlineExceeded(f"{what}: the deadline expired before it could start")
        return effective

    def __enter__(self) -> Deadline:
        self._deadline = self._resolve()
        self._token = _CURRENT.set(self._deadline)
        return self._deadline

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _CURRENT.reset(self._token)
            self._token = None

    async def __aenter__(self) -> Deadline:
        deadline = self.__enter__()
        try:
            self._timer = asyncio.timeout(deadline.remaining())
            await self._timer.__aenter__()
        except BaseException:
            self._timer = None
            self.__exit__(None, None, None)
            raise
        return deadline

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        timer, self._timer = self._timer, None
        try:
            if timer is not None:
                await timer.__aexit__(exc_type, exc, tb)
        except TimeoutError as timeout_exc:
            # asyncio.timeout turns its own cancellation into TimeoutError; only that one
            # (timer.expired()) is ours: a TimeoutError raised by the body passes unchanged.
            if timer is not None and timer.expired():
                what = f"{self._kind} operation" if self._kind else "operation"
                raise DeadlineExceeded(
                    f"{what} did not finish before its deadline"
                ) from timeout_exc
            raise
        finally:
            self.__exit__(exc_type, exc, tb)
