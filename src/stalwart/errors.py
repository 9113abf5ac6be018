"""The one exception tree of stalwart.

Every error stalwart raises derives from :class:`StalwartError`; every shutdown
signal derives from :class:`Shutdown`, a :class:`BaseException`, so that an
``except Exception`` in user code cannot swallow it (as ``KeyboardInterrupt``
and ``asyncio.CancelledError`` cannot be swallowed that way).

Each error carries a *classification* on two axes (see ``docs/errors.md``):

- ``retryable`` or ``permanent``: would the same call, made again, possibly
  succeed?
- ``transient`` or ``systemic``: is this a passing fault of one call, or a
  condition of the system (a dependency down, a config wrong) that will hold
  until something changes?

The tree::

    BaseException
     └── Shutdown                      a request to stop; never swallowed
          └── NodeShutdown             the node is stopping

    Exception
     └── StalwartError                 root of every stalwart error
          ├── ConfigError              a setting is wrong; names the setting
          ├── InvalidMessage           a payload is not JSON-compatible data
          ├── ProtocolError            a malformed frame or unknown message type
          ├── CallError                an inter-process call did not complete
          │    ├── CallTimeout         no reply before the deadline
          │    ├── NoProcess           target unknown, dead, or restarting
          │    └── RemoteError         the target raised; carries its type and text
          ├── SupervisorError
          │    ├── StartError          a child failed to start
          │    └── GaveUp              restart intensity exceeded
          ├── DeadlineExceeded         an operation ran past its deadline
          ├── DependencyError          an external call failed (model, tool, store…)
          │    ├── CircuitOpen         the breaker rejects calls right now
          │    ├── RateLimited         a rate limiter refused (or 429)
          │    └── RetriesExhausted    every attempt failed; carries the last error
          └── StoreError               the durable store failed
               ├── StoreUnavailable    cannot reach the store
               ├── CorruptRecord       checksum or format check failed
               ├── NonDeterminismError replay found different steps than recorded
               └── LeaseLost           this runner no longer owns the task
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "CallError",
    "CallTimeout",
    "CircuitOpen",
    "ConfigError",
    "CorruptRecord",
    "DeadlineExceeded",
    "DependencyError",
    "ErrorClass",
    "GaveUp",
    "InvalidMessage",
    "LeaseLost",
    "NoProcess",
    "NodeShutdown",
    "NonDeterminismError",
    "ProtocolError",
    "RateLimited",
    "RemoteError",
    "RetriesExhausted",
    "Shutdown",
    "StalwartError",
    "StartError",
    "StoreError",
    "StoreUnavailable",
    "SupervisorError",
]

Retryability = Literal["retryable", "permanent"]
Scope = Literal["transient", "systemic"]


class ErrorClass:
    """Names of the two classification axes, as used in logs and metric labels."""

    RETRYABLE: Retryability = "retryable"
    PERMANENT: Retryability = "permanent"
    TRANSIENT: Scope = "transient"
    SYSTEMIC: Scope = "systemic"


class Shutdown(BaseException):
    """A request to stop. Derives from BaseException so ``except Exception`` cannot eat it."""


class NodeShutdown(Shutdown):
    """The node is shutting down; work in progress should unwind."""


class StalwartError(Exception):
    """Root of every error stalwart raises.

    ``retryable`` and ``scope`` are the error's default classification; the
    resilience layer may refine it per call (e.g. from an HTTP status).
    """

    retryable: Retryability = "permanent"
    scope: Scope = "transient"

    @property
    def error_class(self) -> str:
        """The label used on log lines and metrics, e.g. ``retryable/transient``."""
        return f"{self.retryable}/{self.scope}"


class ConfigError(StalwartError):
    """A configuration value is wrong. The message names the setting and the allowed values."""

    scope: Scope = "systemic"


class InvalidMessage(StalwartError):
    """A message payload is not JSON-compatible data (or is too large or too deep)."""


class ProtocolError(StalwartError):
    """A frame on a process channel was malformed, too large, or of an unknown type."""


class CallError(StalwartError):
    """An inter-process call did not complete normally."""

    def __init__(self, message: str, *, target: str | None = None) -> None:
        super().__init__(message)
        self.target = target


class CallTimeout(CallError):
    """No reply arrived before the call's deadline. The target may still be working."""

    retryable: Retryability = "retryable"


class NoProcess(CallError):
    """The target is unknown, has exited, or is restarting. Raised at once, never after a wait."""

    retryable: Retryability = "retryable"


class RemoteError(CallError):
    """The target's handler raised. ``remote_type`` is the exception type's name there."""

    def __init__(self, message: str, *, target: str | None = None, remote_type: str = "") -> None:
        super().__init__(message, target=target)
        self.remote_type = remote_type


class SupervisorError(StalwartError):
    """A supervisor could not keep its children running."""

    scope: Scope = "systemic"


class StartError(SupervisorError):
    """A child failed to start (its init raised, or it did not report ready in time)."""


class GaveUp(SupervisorError):
    """A supervisor exceeded its restart intensity and stopped all its children."""


class DeadlineExceeded(StalwartError):
    """An operation ran past its deadline."""

    retryable: Retryability = "retryable"


class DependencyError(StalwartError):
    """An external dependency (model API, tool, store, notifier) failed."""

    def __init__(self, message: str, *, dependency: str = "") -> None:
        super().__init__(message)
        self.dependency = dependency


class CircuitOpen(DependencyError):
    """The dependency's circuit breaker is open: the call was rejected without being made."""

    retryable: Retryability = "retryable"
    scope: Scope = "systemic"


class RateLimited(DependencyError):
    """A rate limit refused the call. ``retry_after`` is the suggested wait in seconds."""

    retryable: Retryability = "retryable"

    def __init__(
        self, message: str, *, dependency: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(message, dependency=dependency)
        self.retry_after = retry_after


class RetriesExhausted(DependencyError):
    """Every attempt failed. ``last_error`` is the final attempt's error."""

    def __init__(
        self,
        message: str,
        *,
        dependency: str = "",
        attempts: int = 0,
        last_error: BaseException | None = None,
    ) -> None:
        super().__init__(message, dependency=dependency)
        self.attempts = attempts
        self.last_error = last_error


class StoreError(StalwartError):
    """The durable store failed."""


class StoreUnavailable(StoreError):
    """The store cannot be reached (file unavailable, server down)."""

    retryable: Retryability = "retryable"
    scope: Scope = "systemic"


class CorruptRecord(StoreError):
    """A stored record failed its checksum or format check; it has been quarantined."""


class NonDeterminismError(StoreError):
    """Replay met a step different (name or order) from the one recorded: the code changed."""


class LeaseLost(StoreError):
    """This runner's lease on a task expired or was taken over; it must stop working on it."""
