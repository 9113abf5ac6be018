"""Error classification: is it worth trying again, and is the dependency itself in trouble?

Every exception that crosses a policy is mapped to a :class:`Classification`
on the two axes of :mod:`stalwart.errors`:

- **retryable / permanent** — could the same call, made again, succeed? Decides
  whether :class:`~stalwart.resilience.RetryPolicy` tries again and whether a
  :class:`~stalwart.resilience.CircuitBreaker` counts the error as a failure of
  the dependency (permanent errors, like a 400, are the caller's fault and are
  not counted).
- **transient / systemic** — a passing fault of one call, or a condition of
  the dependency (down, misconfigured credentials) that holds until something
  changes.

Order of decision (first match wins):

1. classifiers registered with :func:`register_classifier`, newest first;
2. stalwart's own errors carry their class (``StalwartError.retryable``/``scope``);
3. a context-length error (a 400/413/422, or an exception without a status,
   whose message or body says so) is permanent for that model, with
   ``fallback=True`` so a fallback chain can try a larger model;
4. otherwise an HTTP status (``httpx.HTTPStatusError``, or any exception with an int
   ``status_code`` or ``response.status_code``, as the OpenAI and Anthropic SDKs
   raise) maps by :data:`HTTP_STATUS_CLASSES`, unless the response says
   ``x-should-retry: true|false``; ``retry-after-ms`` / ``Retry-After`` is read;
5. transport errors: connection refused / DNS failure (retryable, systemic),
   timeouts and resets (retryable, transient);
6. an exception none of these rules knows, raised ``from`` one they do
   (``raise ToolFailed(...) from httpx_error``), takes its explicit cause's class;
7. anything else is **permanent**: an unknown exception is most likely a bug,
   and retrying a bug only multiplies its effects.
"""

from __future__ import annotations

import dataclasses
import email.utils
import math
import socket
import threading
import time
from collections.abc import Callable, Mapping

import httpx

from stalwart.errors import ErrorClass, RateLimited, Retryability, Scope, StalwartError
from stalwart.observe import get_logger

__all__ = [
    "Classification",
    "Classifier",
    "HTTP_STATUS_CLASSES",
    "classify",
    "classify_http_status",
    "parse_retry_after",
    "register_classifier",
    "retry_after_from_headers",
    "unregister_classifier",
]

_log = get_logger("stalwart.resilience")


@dataclasses.dataclass(frozen=True, slots=True)
class Classification:
    """How an error is treated by retries, breakers, logs and metrics.

    retryability
        ``"retryable"`` or ``"permanent"``.
    scope
        ``"transient"`` or ``"systemic"``.
    reason
        Short machine-readable cause, e.g. ``"http_503"``, ``"connect_error"``,
        ``"timeout"``, ``"context_length"``, ``"unclassified"``.
    retry_after
        Seconds the dependency asked us to wait (``Retry-After``), if it said.
    fallback
        True when another model/endpoint may succeed where this one cannot
        (context-length errors): a hint for fallback chains.
    """

    retryability: Retryability
    scope: Scope
    reason: str
    retry_after: float | None = None
    fallback: bool = False

    @property
    def retryable(self) -> bool:
        """True if trying the same call again may succeed."""
        return self.retryability == ErrorClass.RETRYABLE

    @property
    def label(self) -> str:
        """``retryability/scope``, the ``class`` label on logs and metrics."""
        return f"{self.retryability}/{self.scope}"


Classifier = Callable[[BaseException], Classification | None]
"""A user classifier: return a :class:`Classification`, or ``None`` to pass."""

_R: Retryability = "retryable"
_P: Retryability = "permanent"
_T: Scope = "transient"
_S: Scope = "systemic"

HTTP_STATUS_CLASSES: Mapping[int, tuple[Retryability, Scope]] = {
    400: (_P, _T),  # the request is wrong; sending it again changes nothing
    401: (_P, _S),  # credentials wrong or expired: holds for every call until fixed
    403: (_P, _S),
    404: (_P, _T),
    422: (_P, _T),
    408: (_R, _T),  # request timeout
    409: (_R, _T),  # conflict: usually a concurrent update; a retry re-reads
    425: (_R, _T),  # too early
    429: (_R, _T),  # rate limited; honour Retry-After
    500: (_R, _T),
    502: (_R, _S),  # the dependency behind the gateway is down
    503: (_R, _S),  # unavailable: overloaded or in maintenance
    504: (_R, _T),
}
"""Status codes with an explicit class. Other 4xx are permanent/transient, other
5xx retryable/transient."""

_CONTEXT_LENGTH_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "prompt is too long",
)
# Statuses a context-length error comes with. Not 429: "tokens per minute" is a rate limit.
_CONTEXT_LENGTH_STATUSES = frozenset({400, 413, 422})
_MAX_CAUSE_DEPTH = 5

_classifiers: tuple[Classifier, ...] = ()
_classifiers_lock = threading.Lock()


def register_classifier(classifier: Classifier) -> Classifier:
    """Add a classifier consulted before the built-in rules (newest first).

    Returns ``classifier`` so it can be used as a decorator. A classifier that
    raises is logged and skipped: classification itself never fails.
    """
    global _classifiers  # noqa: PLW0603 - copy-on-write tuple, read without a lock
    with _classifiers_lock:
        _classifiers = (classifier, *tuple(c for c in _classifiers if c is not classifier))
    return classifier


def unregister_classifier(classifier: Classifier) -> None:
    """Remove a classifier added with :func:`register_classifier` (no error if absent)."""
    global _classifiers  # noqa: PLW0603
    with _classifiers_lock:
        _classifiers = tuple(c for c in _classifiers if c is not classifier)


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date.

    ``now`` is wall time (seconds since the epoch) for the HTTP-date form. An
    invalid or absent value gives ``None``; a date in the past gives ``0.0``.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; treat a naive one as such
            return None
        return max(0.0, when.timestamp() - now)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """``headers[name]`` whatever its case (httpx headers are case-insensitive, a dict is not)."""
    value = headers.get(name)
    if value is not None:
        return value
    for key, candidate in headers.items():
        if key.lower() == name:
            return candidate
    return None


def retry_after_from_headers(headers: Mapping[str, str], *, now: float) -> float | None:
    """Seconds the response asks to wait, read as the OpenAI and Anthropic SDKs read it:
    ``retry-after-ms`` (milliseconds) first, then ``Retry-After`` (seconds or an HTTP-date).
    ``None`` when neither is present and valid."""
    millis = _header(headers, "retry-after-ms")
    if millis is not None:
        try:
            value = float(millis.strip())
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value / 1000.0
    return parse_retry_after(_header(headers, "retry-after"), now=now)


def classify_http_status(
    status: int, headers: Mapping[str, str] | None = None, *, now: float | None = None
) -> Classification:
    """Classify an HTTP response status (and read its retry headers, if any).

    The response's own word comes first, as in the OpenAI and Anthropic SDKs:
    ``x-should-retry: true`` makes any status retryable, ``x-should-retry:
    false`` makes it permanent (reason ``http_<status>`` either way). The wait
    asked for is read from ``retry-after-ms``, else ``Retry-After``
    (:func:`retry_after_from_headers`). ``now`` is the wall time used for an
    HTTP-date ``Retry-After``; it defaults to :func:`time.time`.
    """
    known = HTTP_STATUS_CLASSES.get(status)
    if known is not None:
        retryability, scope = known
    elif 400 <= status < 500:
        retryability, scope = _P, _T
    elif status >= 500:
        retryability, scope = _R, _T
    else:  # a 1xx/2xx/3xx raised as an error: nothing a retry would change
        retryability, scope = _P, _T
    retry_after = None
    if headers is not None:
        should_retry = (_header(headers, "x-should-retry") or "").strip().lower()
        if should_retry == "true":
            retryability = _R
        elif should_retry == "false":
            retryability = _P
        if retryability == _R:
            retry_after = retry_after_from_headers(headers, now=time.time() if now is None else now)
    return Classification(retryability, scope, f"http_{status}", retry_after)


def _status_and_headers(exc: BaseException) -> tuple[int, Mapping[str, str] | None] | None:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code, exc.response.headers
    status = getattr(exc, "status_code", None)
    response = getattr(exc, "response", None)
    if status is None and response is not None:
        status = getattr(response, "status_code", None)
    if isinstance(status, int) and not isinstance(status, bool):
        headers = getattr(response, "headers", None)
        return status, headers if isinstance(headers, Mapping) else None
    return None


def _mentions_context_length(exc: BaseException) -> bool:
    texts = [str(exc)]
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            texts.append(str(response.text)[:4096])
        except Exception:  # a streamed body not read yet, or not decodable: skip it
            pass
    body = getattr(exc, "body", None)  # the OpenAI SDK keeps the parsed error body here
    if body is not None:
        texts.append(str(body)[:4096])
    haystack = " ".join(texts).lower()
    return any(marker in haystack for marker in _CONTEXT_LENGTH_MARKERS)


def _classify_transport(exc: BaseException) -> Classification | None:
    if isinstance(exc, httpx.TransportError):
        if isinstance(exc, httpx.ConnectTimeout):
            return Classification(_R, _S, "connect_timeout")
        if isinstance(exc, httpx.TimeoutException):
            return Classification(_R, _T, "timeout")
        if isinstance(exc, httpx.ConnectError):
            return Classification(_R, _S, "connect_error")
        if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError | httpx.ProxyError):
            return Classification(_R, _T, "network_error")
        # LocalProtocolError, UnsupportedProtocol: our request or our config is wrong.
        return Classification(_P, _S, "transport_misuse")
    if isinstance(exc, ConnectionRefusedError | socket.gaierror):
        return Classification(_R, _S, "connect_error")
    if isinstance(exc, ConnectionError):
        return Classification(_R, _T, "network_error")
    if isinstance(exc, TimeoutError):  # also asyncio.TimeoutError and socket.timeout
        return Classification(_R, _T, "timeout")
    return None


def _classify_builtin(exc: BaseException, now: float | None) -> Classification | None:
    if isinstance(exc, StalwartError):
        retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
        return Classification(exc.retryable, exc.scope, type(exc).__name__, retry_after)
    status = _status_and_headers(exc)
    if status is not None:
        if status[0] in _CONTEXT_LENGTH_STATUSES and _mentions_context_length(exc):
            return Classification(_P, _T, "context_length", fallback=True)
        return classify_http_status(status[0], status[1], now=now)
    transport = _classify_transport(exc)
    if transport is not None:
        return transport
    if _mentions_context_length(exc):
        return Classification(_P, _T, "context_length", fallback=True)
    return None


def classify(exc: BaseException, *, now: float | None = None) -> Classification:
    """Classify ``exc`` (see the module docstring for the rules and their order).

    ``now`` is wall time for an HTTP-date ``Retry-After`` (default: the real
    time). Never raises.
    """
    for classifier in _classifiers:
        try:
            result = classifier(exc)
        except Exception:
            _log.exception(
                "classifier_failed",
                classifier=getattr(classifier, "__qualname__", repr(classifier)),
                error_type=type(exc).__name__,
            )
            continue
        if result is not None:
            return result
    # An exception we do not know, raised ``from`` one we do (``raise ToolError(...) from
    # httpx_error``), takes the class of its explicit cause.
    current: BaseException | None = exc
    for _ in range(_MAX_CAUSE_DEPTH):
        if current is None:
            break
        result = _classify_builtin(current, now)
        if result is not None:
            return result
        current = current.__cause__
    return Classification(_P, _T, "unclassified")


def describe(exc: BaseException, limit: int = 300) -> str:
    """``Type: message``, shortened, for log lines."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 1] + "…"
