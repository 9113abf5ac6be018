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
     ├── Shutdown                      a request to stop; never swallowed
     │    └── NodeShutdown             the node is stopping
     └── TaskSuspended                 the task parks durably (a held tool call); never swallowed

    Exception
     └── StalwartError                 root of every stalwart error
          ├── ConfigError              a setting is wrong; names the setting
          │    └── NotExercised        verify cannot exercise a checklist item on this app
          ├── InvalidMessage           a payload is not JSON-compatible data
          ├── ProtocolError            a malformed frame or unknown message type
          ├── CallError                an inter-process call did not complete
          │    ├── CallTimeout         no reply before the deadline (also a TimeoutError)
          │    ├── NoProcess           target unknown, dead, or restarting
          │    └── RemoteError         the target raised; carries its type and text
          ├── SupervisorError
          │    ├── StartError          a child failed to start
          │    ├── GaveUp              restart intensity exceeded
          │    └── ChildError          a child operation was refused (OTP's {error, Reason})
          ├── DeadlineExceeded         an operation ran past its deadline (also a TimeoutError)
          ├── Overloaded               admission limit reached: task not accepted (HTTP 429)
          ├── SecurityError            the guard layer refused something
          │    ├── SecretNotFound      a secret reference names no secret
          │    ├── InputRejected       a task input failed validation (size, depth, type, schema)
          │    ├── BudgetExceeded      a model call could cross a spend limit; not made
          │    └── OutputBlocked       an output held PII or credentials under a block policy
          ├── OutcomeUnknown           a side effect may or may not have happened; not repeated
          ├── StepFailed               a durable step raised; journaled, so replay raises it too
          ├── DependencyError          an external call failed (model, tool, store…)
          │    ├── CircuitOpen         the breaker rejects calls right now
          │    ├── RateLimited         a rate limiter refused (or 429)
          │    ├── RetriesExhausted    every attempt failed; carries the last error
          │    └── ModelError          a model API call failed
          │         ├── ModelHTTPError          an HTTP error status from the model API
          │         ├── ModelAuthError          401/403: the key is wrong or lacks access
          │         ├── ContextLengthExceeded   the prompt is too long for this model
          │         ├── ContentFiltered         the provider refused the content
          │         ├── BadModelResponse        malformed, truncated, wrong type, too big
          │         ├── ModelCannotServe        this model refuses a parameter of the request
          │         ├── OutputInvalid           structured output failed its schema, repairs too
          │         └── AllModelsFailed         every model of a fallback chain failed
          └── StoreError               the durable store failed
               ├── StoreUnavailable    cannot reach the store
               │    └── CommitUnknown  a COMMIT's answer was lost: it may have landed
               ├── CorruptRecord       checksum or format check failed
               ├── SchemaMissing       a read-only open found no (or an old) schema
               ├── IncompatibleFormat  written by a newer stalwart: left for a node that can
               ├── NonDeterminismError replay found different steps than recorded
               └── LeaseLost           this runner no longer owns the task
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = [
    "AllModelsFailed",
    "BadModelResponse",
    "BudgetExceeded",
    "CallError",
    "CallTimeout",
    "ChildError",
    "CircuitOpen",
    "CommitUnknown",
    "ConfigError",
    "ContentFiltered",
    "ContextLengthExceeded",
    "CorruptRecord",
    "DeadlineExceeded",
    "DependencyError",
    "ErrorClass",
    "GaveUp",
    "IncompatibleFormat",
    "InputRejected",
    "InvalidMessage",
    "LeaseLost",
    "ModelAuthError",
    "ModelCannotServe",
    "ModelError",
    "ModelHTTPError",
    "NoProcess",
    "NodeShutdown",
    "NonDeterminismError",
    "OutcomeUnknown",
    "OutputInvalid",
    "OutputBlocked",
    "ProtocolError",
    "RateLimited",
    "RemoteError",
    "RetriesExhausted",
    "SchemaMissing",
    "SecretNotFound",
    "SecurityError",
    "Shutdown",
    "StalwartError",
    "StartError",
    "StepFailed",
    "StoreError",
    "StoreUnavailable",
    "TaskSuspended",
    "SupervisorError",
    "ToolServerError",
    "ToolServerUnavailable",
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


class TaskSuspended(BaseException):
    """The running task parks durably until something outside decides (a held tool call).

    Raised by the agent layer, outside any journaled step, and handled by the
    durable runner: the task becomes ``awaiting_approval`` with ``waiting`` (JSON
    data saying what it waits for) as its outcome and its lease dropped, and the
    process takes other work. A BaseException so user code's ``except Exception``
    cannot turn it into a tool error.
    """

    def __init__(self, message: str, *, waiting: dict[str, Any]) -> None:
        super().__init__(message)
        self.waiting = waiting


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


class NotExercised(ConfigError):
    """``stalwart verify`` cannot exercise a checklist item on this app (no workload
    input reaches the mechanism, a dependency it cannot fault). The item is reported
    ``not-run``; ``fix`` says what to add to the app's verification profile."""

    def __init__(self, message: str, *, fix: str = "") -> None:
        super().__init__(message)
        self.fix = fix


class InvalidMessage(StalwartError):
    """A message payload is not JSON-compatible data (or is too large or too deep)."""


class ProtocolError(StalwartError):
    """A frame on a process channel was malformed, too large, or of an unknown type."""


class CallError(StalwartError):
    """An inter-process call did not complete normally."""

    def __init__(self, message: str, *, target: str | None = None) -> None:
        super().__init__(message)
        self.target = target


class CallTimeout(CallError, TimeoutError):
    """No reply arrived before the call's deadline. The target may still be working.

    Also a builtin :class:`TimeoutError`, so ``except TimeoutError`` catches it.
    """

    retryable: Retryability = "retryable"


class NoProcess(CallError):
    """The target is unknown, has exited, or is restarting. Raised at once, never after a wait."""

    retryable: Retryability = "retryable"


class RemoteError(CallError):
    """The target's handler raised. ``remote_type`` is the exception type's name there.

    When that is one of stalwart's own errors, the remote error keeps its class
    (a store that was full or locked in the callee is as retryable here as
    there); any other remote exception is permanent.
    """

    def __init__(self, message: str, *, target: str | None = None, remote_type: str = "") -> None:
        super().__init__(message, target=target)
        self.remote_type = remote_type
        known = globals().get(remote_type) if remote_type in __all__ else None
        if isinstance(known, type) and issubclass(known, StalwartError):
            self.retryable = known.retryable
            self.scope = known.scope


class SupervisorError(StalwartError):
    """A supervisor could not keep its children running."""

    scope: Scope = "systemic"


class StartError(SupervisorError):
    """A child failed to start (its init raised, or it did not report ready in time)."""


class GaveUp(SupervisorError):
    """A supervisor exceeded its restart intensity and stopped all its children."""


class ChildError(SupervisorError):
    """A supervisor refused a child operation; ``reason`` is OTP's error term.

    ``not_found`` (no child spec with that id), ``running`` (restart or delete of a
    running child: terminate it first), ``restarting`` (its restart failed and is
    being retried), ``already_present`` (start of an id whose spec is kept but not
    running: use restart_child), ``already_started`` (start of an id that runs),
    ``max_children`` (a dynamic supervisor is full), ``dynamic`` (an operation a
    dynamic supervisor does not take), ``not_running`` (the supervisor itself has
    stopped or given up).
    """

    def __init__(self, message: str, *, reason: str, child: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.child = child


class DeadlineExceeded(StalwartError, TimeoutError):
    """An operation ran past its deadline.

    Also a builtin :class:`TimeoutError`, so ``except TimeoutError`` catches it.
    """

    retryable: Retryability = "retryable"


class OutcomeUnknown(StalwartError):
    """A side effect was started but its end was never recorded (the runner died mid-call).

    The effect does not deduplicate on its idempotency key, so calling it again
    could deliver it twice; it was not repeated. ``key`` is the idempotency key
    to reconcile by hand (or with the effect's reconcile hook).
    """

    def __init__(self, message: str, *, key: str = "", step: str = "") -> None:
        super().__init__(message)
        self.key = key
        self.step = step


class StepFailed(StalwartError):
    """A durable step's function raised. The failure is journaled like a result.

    On the first run the original exception is ``__cause__``; on replay only its
    type name (``error_type``) and text (``error_message``) remain. Raising the same
    error type in both cases keeps replay exact: code that catches it takes the same
    path after a resume as it did before.
    """

    def __init__(self, message: str, *, step: str = "", error_type: str = "",
                 error_message: str = "") -> None:  # fmt: skip
        super().__init__(message)
        self.step = step
        self.error_type = error_type
        self.error_message = error_message


class DependencyError(StalwartError):
    """An external dependency (model API, tool, store, notifier) failed."""

    def __init__(self, message: str, *, dependency: str = "") -> None:
        super().__init__(message)
        self.dependency = dependency


class CircuitOpen(DependencyError):
    """The dependency's circuit breaker is open: the call was rejected without being made."""

    retryable: Retryability = "retryable"
    scope: Scope = "systemic"


class ToolServerUnavailable(DependencyError):
    """A tool server (an MCP server) is not connected: it is starting, it died, or it
    cannot be reached. Its tools answer ``unavailable`` and its breaker counts the
    failure; the runtime reconnects on its own (``dependency`` names the server)."""

    retryable: Retryability = "retryable"
    scope: Scope = "systemic"


class ToolServerError(DependencyError):
    """A tool server answered a call with an error (the tool failed, or refused the
    arguments): the same call would fail again."""


class RateLimited(DependencyError):
    """A rate limit refused the call. ``retry_after`` is the suggested wait in seconds."""

    retryable: Retryability = "retryable"

    def __init__(
        self, message: str, *, dependency: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(message, dependency=dependency)
        self.retry_after = retry_after


class RetriesExhausted(DependencyError):
    """Every attempt failed. ``last_error`` is the final attempt's error.

    Raised only by a ``RetryPolicy(on_exhausted="wrap")``; by default a policy
    re-raises the final attempt's own error, with the attempts attached
    (``stalwart.resilience.gave_up``)."""

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


class Overloaded(StalwartError):
    """The node refused a new task: the agent's queue is at its admission limit.

    Nothing was stored, so nothing is lost; the caller may retry later (an HTTP
    front end answers 429). ``retry_after`` is a suggested wait in seconds.
    """

    retryable: Retryability = "retryable"
    scope: Scope = "systemic"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreError(StalwartError):
    """The durable store failed."""


class StoreUnavailable(StoreError):
    """The store cannot be reached (file unavailable, server down)."""

    retryable: Retryability = "retryable"
    scope: Scope = "systemic"


class CommitUnknown(StoreUnavailable):
    """The connection failed while a COMMIT was on its way: the writes may or may not
    have landed, so the store does not run them again by itself. Read what is stored
    to tell (a write that recognises its own row can; ``Store.create_task`` does)."""


class CorruptRecord(StoreError):
    """A stored record failed its checksum or format check; it has been quarantined."""


class SchemaMissing(StoreError):
    """A read-only command found no schema (or an older one) in the database it was given;
    it never creates or migrates one. The message names the URL and how to create it."""

    scope: Scope = "systemic"


class NonDeterminismError(StoreError):
    """Replay met a step different (name or order) from the one recorded: the code changed."""


class IncompatibleFormat(StoreError):
    """A record was written by a newer stalwart (a newer format): this node leaves it alone
    for a node that can read it (rolling upgrades). Nothing is quarantined."""


class LeaseLost(StoreError):
    """This runner's lease on a task expired or was taken over; it must stop working on it."""


class ModelError(DependencyError):
    """A model API call failed. ``model`` is the ``provider:name`` that failed."""

    def __init__(self, message: str, *, dependency: str = "", model: str = "") -> None:
        super().__init__(message, dependency=dependency or model)
        self.model = model


class ModelHTTPError(ModelError):
    """The model API answered with an error status; classified by that status."""

    def __init__(
        self,
        message: str,
        *,
        model: str = "",
        status_code: int = 0,
        retryable: Retryability = "permanent",
        scope: Scope = "transient",
    ) -> None:
        super().__init__(message, model=model)
        self.status_code = status_code
        self.retryable = retryable
        self.scope = scope


class ModelAuthError(ModelError):
    """401/403 from the model API: the key is wrong, expired or lacks access. Not retried."""

    scope: Scope = "systemic"


class ContextLengthExceeded(ModelError):
    """The request is longer than this model accepts. Permanent here; another model may fit."""


class ContentFiltered(ModelError):
    """The provider refused the request or the answer on content-policy grounds."""


class BadModelResponse(ModelError):
    """The response was malformed JSON, truncated, of the wrong type, or over the size limit."""

    retryable: Retryability = "retryable"


class ModelCannotServe(ModelError):
    """This model refuses a parameter or feature of the request (a 400 ``unsupported_parameter``
    or ``unsupported_value``: ``max_tokens`` sent to a reasoning model, a temperature it does not
    take, a tool or schema it cannot use). The same request fails again on this model, so it is
    not retried, but another model of a fallback chain may serve it: the chain moves on. Fix it
    by giving the model's capabilities (``Provider(capabilities=...)``) if stalwart's table
    guessed them wrong. ``param`` names the refused parameter when the provider said which."""

    def __init__(self, message: str, *, model: str = "", param: str | None = None) -> None:
        super().__init__(message, model=model)
        self.param = param


class OutputInvalid(ModelError):
    """The model's structured output did not validate against the requested schema, after
    every repair attempt. ``errors`` holds the validator's last messages and ``content`` the
    last text the model gave; raise ``attempts`` or simplify the schema."""

    def __init__(
        self, message: str, *, model: str = "", errors: tuple[str, ...] = (), content: str = ""
    ) -> None:
        super().__init__(message, model=model)
        self.errors = errors
        self.content = content


class AllModelsFailed(ModelError):
    """Every model of a fallback chain failed. ``errors`` maps each model to its error."""

    def __init__(self, message: str, *, errors: dict[str, BaseException]) -> None:
        super().__init__(message, model=",".join(errors))
        self.errors = errors


class SecurityError(StalwartError):
    """The guard layer refused something (a secret, an input, a spend, an output)."""


class SecretNotFound(SecurityError):
    """A ``secret://name`` reference names no secret in the configured provider."""

    scope: Scope = "systemic"

    def __init__(self, message: str, *, name: str = "") -> None:
        super().__init__(message)
        self.name = name


class InputRejected(SecurityError):
    """A task input failed validation: too large, too deep, the wrong type, or off-schema.

    ``reason`` is a short machine-readable code (``too_large``, ``too_deep``,
    ``bad_type``, ``schema``, ``malformed``); the message says what to fix.
    """

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class BudgetExceeded(SecurityError):
    """A model call's worst-case cost could cross a spend limit, so it was not made.

    ``scope`` of the limit is in ``limit_scope`` (``task``, ``agent``, ``day``);
    ``limit_usd`` and ``spent_usd`` say how far it got.
    """

    def __init__(
        self, message: str, *, limit_scope: str = "", limit_usd: float = 0.0,
        spent_usd: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.limit_scope = limit_scope
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd


class OutputBlocked(SecurityError):
    """A task output held PII or credentials and the agent's output policy is ``block``."""
