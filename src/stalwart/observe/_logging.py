"""Structured JSON logs with one field set on every line, in the node and in agents.

Every line carries :data:`COMMON_FIELDS` (``null`` when a field does not apply),
so a log store, ``jq`` or a log shipper can rely on them. Each line passes the
redactor hook (:func:`set_redactor`; a no-op until the security layer installs
one) before it is written anywhere, then goes to the stream (stderr) and to every
sink (:func:`add_log_sink`; the node's log store is one).

Agent processes do not write files or share a stream: :func:`configure_logging`
with ``ship=`` hands each rendered line to a callable (the agent's channel to its
node). The agent's line was redacted and rendered there; the node takes it through
:func:`ingest_redacted`, which fills the node's fields and renders it once more for
its stream and sinks, without a second pass of the whole pipeline -- unless the
node's redactor says the line needs it (it holds a value the node knows to remove, or
the node's redactor is not the one the agents run), when the line takes
:func:`ingest_line`: parsed, redacted and rendered like a local line.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import structlog

__all__ = [
    "COMMON_FIELDS",
    "LogSink",
    "Redactor",
    "add_log_sink",
    "configure_logging",
    "get_logger",
    "ingest_line",
    "ingest_redacted",
    "log_context",
    "redact_text",
    "set_redactor",
]

COMMON_FIELDS: tuple[str, ...] = (
    "ts",
    "level",
    "event",
    "logger",
    "node",
    "agent_id",
    "task_id",
    "step",
    "trace_id",
    "error_class",
)
"""Fields present on every log line, in this order (``null`` when they do not apply)."""

MAX_LINE_CHARS = 64 * 1024
"""A longer line (an agent dumping a huge payload) is cut and marked ``truncated``."""

Redactor = Callable[[dict[str, Any]], dict[str, Any]]
LogSink = Callable[[dict[str, Any], str], None]
Recheck = Callable[[str], bool]
"""Says whether a line another process redacted must pass this process's redactor too."""


def _always(_line: str) -> bool:
    return True


def _no_redaction(record: dict[str, Any]) -> dict[str, Any]:
    return record


class _State:
    """Process-wide logging hooks (a process has one log configuration)."""

    def __init__(self) -> None:
        self.redactor: Redactor = _no_redaction
        self.recheck: Recheck = _always
        self.sinks: list[LogSink] = []
        self.lock = threading.Lock()
        # what ingest_redacted needs of configure_logging's choices (None: not JSON lines
        # on a stream, so shipped lines take the whole pipeline)
        self.stream: TextIO | None = None
        self.level = logging.INFO
        self.bound: dict[str, Any] = {}
        self.write_lock = threading.Lock()
        self.dropped_writes = 0  # shipped lines a closed or broken stream lost


_STATE = _State()


def set_redactor(fn: Redactor | None, *, recheck: Recheck | None = None) -> None:
    """Install the function every record passes before it is written (None: no-op).

    It gets the record as a dict and returns the dict to write; the security
    layer uses it to strip PII and credentials from every line. ``recheck`` is
    for lines an agent process already redacted (:func:`ingest_redacted`): given
    the rendered line, it says whether the line must pass ``fn`` here too; without
    it every such line does (a redactor this process alone runs may find more).
    """
    _STATE.redactor = fn or _no_redaction
    _STATE.recheck = recheck or _always


def redact_text(text: str) -> str:
    """``text`` through the installed redactor (what a log line's ``error`` field gets);
    a redactor that fails yields a placeholder, never the raw text."""
    try:
        return str(_STATE.redactor({"error": text}).get("error", ""))
    except Exception:
        return "[unredactable]"


def add_log_sink(fn: LogSink) -> Callable[[], None]:
    """Also send every (redacted) record and its JSON line to ``fn``; returns a remover.

    Sinks run inline on the logging thread and must be quick (the log store only
    enqueues). A sink that raises is skipped for that line.
    """
    with _STATE.lock:
        _STATE.sinks.append(fn)

    def remove() -> None:
        with _STATE.lock, contextlib.suppress(ValueError):
            _STATE.sinks.remove(fn)

    return remove


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Bind fields (``task_id=``, ``step=``, ``trace_id=``…) to every line logged inside."""
    tokens = structlog.contextvars.bind_contextvars(**fields)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)


def _timestamp(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    if "ts" not in event_dict:
        now = datetime.datetime.now(datetime.UTC)
        event_dict["ts"] = now.isoformat(timespec="microseconds").replace("+00:00", "Z")
    return event_dict


def _error_class(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    exc_info = event_dict.get("exc_info")
    if event_dict.get("error_class") is None and exc_info:
        if isinstance(exc_info, BaseException):
            event_dict["error_class"] = type(exc_info).__name__
        else:
            current = sys.exc_info()[0]
            if current is not None:
                event_dict["error_class"] = current.__name__
    return event_dict


def _common(event_dict: dict[str, Any]) -> dict[str, Any]:
    """Order the record as COMMON_FIELDS first (filled with None), then the rest."""
    if event_dict.get("agent_id") is None and isinstance(event_dict.get("agent"), str):
        event_dict["agent_id"] = event_dict["agent"]  # runtime events name the agent
    if event_dict.get("logger") is None and "logger_name" in event_dict:
        event_dict["logger"] = event_dict.pop("logger_name")
    event_dict.pop("logger_name", None)
    out = {key: event_dict.pop(key, None) for key in COMMON_FIELDS}
    if isinstance(out["level"], str):
        out["level"] = out["level"].lower()
    out.update(event_dict)
    return out


def _render(record: dict[str, Any]) -> str:
    line = json.dumps(record, default=str, ensure_ascii=False)
    if len(line) > MAX_LINE_CHARS:
        cut = {k: record.get(k) for k in COMMON_FIELDS}
        cut["truncated"] = len(line)
        cut["head"] = line[: MAX_LINE_CHARS // 2]
        line = json.dumps(cut, default=str, ensure_ascii=False)
    return line


def _finish(record: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Redact, render and hand to the sinks: the path every line takes exactly once."""
    try:
        record = _STATE.redactor(_common(record))
    except Exception as exc:  # a broken redactor must never leak the unredacted line
        record = {k: None for k in COMMON_FIELDS} | {
            "level": "error",
            "event": "log_redactor_failed",
            "error_class": type(exc).__name__,
        }
    line = _render(record)
    for sink in tuple(_STATE.sinks):
        try:
            sink(record, line)
        except Exception:
            pass  # a failing sink must not stop logging (the store counts its own drops)
    return record, line


def _bind_static(fields: dict[str, Any]) -> Any:
    def processor(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        for key, value in fields.items():
            if event_dict.get(key) is None:
                event_dict[key] = value
        return event_dict

    return processor


def _json_renderer(ship: Callable[[str], None] | None) -> Any:
    def processor(_logger: Any, _method: str, event_dict: dict[str, Any]) -> str:
        _record, line = _finish(event_dict)
        if ship is not None:
            ship(line)
            raise structlog.DropEvent
        return line

    return processor


class _StdlibBridge(logging.Handler):
    """Sends stdlib records (uvicorn, asyncio, libraries) through the same JSON pipeline."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {"logger": record.name}
            if record.exc_info and record.exc_info[0] is not None:
                fields["error_class"] = record.exc_info[0].__name__
                fields["exception"] = logging.Formatter().formatException(record.exc_info)
            structlog.get_logger().log(record.levelno, record.getMessage(), **fields)
        except Exception:
            self.handleError(record)


_BRIDGE = _StdlibBridge()
_CHATTY = ("httpx", "httpcore")


def configure_logging(
    *,
    level: int = logging.INFO,
    stream: TextIO | None = None,
    json: bool = True,
    ship: Callable[[str], None] | None = None,
    capture_stdlib: bool = True,
    **bound: Any,
) -> None:
    """Configure JSON lines with :data:`COMMON_FIELDS` on every line of this process.

    ``bound`` fields (e.g. ``node="n1"``) are added to every line. ``ship``, when
    given, receives each rendered line instead of ``stream`` (agent processes
    ship theirs to the node). ``capture_stdlib`` routes the standard library's
    ``logging`` (uvicorn, asyncio) through the same pipeline, so no line on
    stderr escapes the schema. ``json=False`` prints for people (``stalwart
    demo``, ``stalwart run`` on a terminal: colour only when ``stream`` is one, unset
    fields left out); sinks and the redactor still see every record.
    """
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _timestamp,
        _error_class,
        structlog.processors.format_exc_info,
    ]
    if bound:
        processors.insert(0, _bind_static(bound))
    _STATE.stream = (stream or sys.stderr) if json and ship is None else None
    _STATE.level = level
    _STATE.bound = dict(bound)
    if json:
        processors.append(_json_renderer(ship))
    else:
        processors.append(_console_tee(stream or sys.stderr))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    if capture_stdlib:
        if _BRIDGE not in root.handlers:
            root.addHandler(_BRIDGE)
        root.setLevel(max(level, logging.INFO))
        for chatty in _CHATTY:  # one INFO line per HTTP request is noise, not signal
            logging.getLogger(chatty).setLevel(max(level, logging.WARNING))
    elif _BRIDGE in root.handlers:
        root.removeHandler(_BRIDGE)


def _console_tee(stream: TextIO) -> Any:
    try:
        colors = stream.isatty()  # colour codes only for a terminal, never into a file
    except (AttributeError, ValueError):
        colors = False
    console = structlog.dev.ConsoleRenderer(timestamp_key="ts", colors=colors)

    def processor(logger: Any, method: str, event_dict: dict[str, Any]) -> Any:
        record, _line = _finish(dict(event_dict))
        return console(logger, method, _for_people(record))

    return processor


def _for_people(record: dict[str, Any]) -> dict[str, Any]:
    """A record as a terminal shows it: the time of day first, no empty fields, and
    ``agent_id`` only when it says more than ``agent`` (the JSON line keeps them all)."""
    shown = {k: v for k, v in record.items() if v is not None}
    if shown.get("agent_id") == shown.get("agent"):
        shown.pop("agent_id", None)
    ts = shown.get("ts")
    if isinstance(ts, str) and "T" in ts:
        shown["ts"] = ts.partition("T")[2][:12]  # 14:30:19.010 (UTC, as in the JSON)
    return shown


def ingest_line(line: str, **defaults: Any) -> None:
    """Log a JSON line another process rendered (an agent's), through this process's pipeline.

    ``defaults`` (``agent_id=``) fill fields the line lacks; this process's bound
    fields (``node``) are added; the redactor and sinks see it like a local line.
    A line that is not a JSON object is kept as ``raw`` under event ``unparsed_log_line``.
    """
    try:
        fields = json.loads(line)
        if not isinstance(fields, dict):
            raise ValueError("not an object")
    except ValueError:
        fields = {"event": "unparsed_log_line", "level": "warning", "raw": line[:MAX_LINE_CHARS]}
    for key, value in defaults.items():
        if fields.get(key) is None:
            fields[key] = value
    for key in COMMON_FIELDS:  # an agent's null leaves the field to this process's context
        if key in fields and fields[key] is None:
            del fields[key]
    level_name = str(fields.pop("level", None) or "info").upper()
    levelno = logging.getLevelName(level_name)
    if not isinstance(levelno, int):
        levelno = logging.INFO
    event = str(fields.pop("event", None) or "")
    structlog.get_logger().log(levelno, event, **fields)


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


def ingest_redacted(line: str, **defaults: Any) -> None:
    """Log a JSON line an agent process of this node redacted and rendered (its
    :func:`configure_logging` ``ship=``), rendering it once more and redacting it no more.

    Fills ``defaults`` (``agent_id=``) and this process's bound fields (``node``) where
    the line has them null, drops it below this process's level, and hands it to the
    stream and the sinks. A line the installed ``recheck`` flags (see
    :func:`set_redactor`), one that is not a JSON object with the common fields, and
    every line while this process does not write JSON lines to a stream, take
    :func:`ingest_line` instead: parsed, redacted and rendered as a local line is.
    """
    stream = _STATE.stream
    if stream is None or _STATE.recheck(line):
        _ingest_line_or_drop(line, defaults)
        return
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict) or "level" not in record or "node" not in record:
        _ingest_line_or_drop(line, defaults)
        return
    level = record["level"]
    if _LEVELS.get(level, logging.ERROR) < _STATE.level:
        return
    for fields in (defaults, _STATE.bound):
        for key, value in fields.items():
            if record.get(key) is None:
                record[key] = value
    line = _render(record)
    for sink in tuple(_STATE.sinks):
        try:
            sink(record, line)
        except Exception:
            pass  # as in _finish: a failing sink must not stop logging
    with _STATE.write_lock:  # one write per line: threads never interleave inside one
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            # a closed or broken stream (a pipe whose reader left, a stream closed
            # under us) loses this line, as logging's handlers do: it must never raise
            # into the caller, the node's reader of an agent's channel
            _STATE.dropped_writes += 1


def _ingest_line_or_drop(line: str, defaults: dict[str, Any]) -> None:
    try:
        ingest_line(line, **defaults)
    except (OSError, ValueError):  # a closed or broken stream: see ingest_redacted
        _STATE.dropped_writes += 1


def get_logger(name: str) -> Any:
    """A lazy structlog logger tagged with ``logger=name`` (configured at first use)."""
    return structlog.get_logger(logger_name=name)
