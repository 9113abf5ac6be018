"""The wire protocol between the node and its agent processes.

Processes share no memory: everything crosses a Unix socket as *frames*. A
frame is a 4-byte big-endian length followed by that many bytes of msgpack, the
encoding of one of the typed messages below (msgspec tagged structs). User
payloads inside a message are JSON-compatible data only (``None``, ``bool``,
``int``, finite ``float``, ``str``, ``list``, ``dict`` with ``str`` keys), checked
by :func:`check_json` before anything is sent.

Failure rules, from the reader's side:

- A length prefix larger than ``max_frame_bytes`` (or a stream that ends inside
  a frame) means the stream cannot be trusted any more: :class:`ProtocolError`,
  and the connection is closed. The node treats that agent as crashed.
- A frame of the right length whose bytes do not decode, or whose type tag is
  unknown, is dropped with a :class:`ProtocolError` event; the stream goes on
  (the framing is intact, so the next frame can still be read).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import msgspec

from stalwart.errors import InvalidMessage, ProtocolError

__all__ = [
    "Call",
    "CallResult",
    "Cast",
    "Exiting",
    "Frame",
    "Heartbeat",
    "InitFailed",
    "LogLine",
    "MetricSamples",
    "OutCall",
    "OutCast",
    "Ready",
    "Reply",
    "Stop",
    "Sync",
    "check_json",
    "decode_frame",
    "encode_frame",
    "HEADER",
    "MAX_DEPTH",
]

HEADER = struct.Struct(">I")
MAX_DEPTH = 64
"""Deepest nesting a payload may have (a deeper one is refused, not recursed into)."""


class _Msg(msgspec.Struct, tag=True, array_like=True, omit_defaults=True):
    pass


# node -> agent ------------------------------------------------------------------------
class Call(_Msg, tag="call"):
    """A request that wants a reply; ``timeout`` is the seconds the caller will wait."""

    ref: int
    payload: Any
    timeout: float
    sender: str = ""
    trace: str = ""
    """The sender's span context (W3C ``traceparent``), "" when tracing is off."""


class Cast(_Msg, tag="cast"):
    """A one-way message; no reply."""

    payload: Any
    sender: str = ""
    trace: str = ""
    """The sender's span context (W3C ``traceparent``), "" when tracing is off."""


class Stop(_Msg, tag="stop"):
    """Ask the agent to run its ``terminate`` and exit 0 (graceful shutdown)."""

    reason: str = "shutdown"


class Sync(_Msg, tag="sync"):
    """Ask the agent to send an empty ``Reply(ref, ok=True)`` at once, from its reader
    (not its mailbox): the channel keeps order, so when the node reads that reply it
    has read every frame the agent sent before it read this one (its published events
    among them). A barrier, not a call: no handler runs."""

    ref: int


class CallResult(_Msg, tag="cres"):
    """The outcome of a call this agent made to another agent through the node."""

    ref: int
    ok: bool
    payload: Any = None
    error_type: str = ""
    error: str = ""


# agent -> node ------------------------------------------------------------------------
class Ready(_Msg, tag="ready"):
    """The agent's ``init`` returned; it is accepting messages."""

    pid: int


class InitFailed(_Msg, tag="initfail"):
    """The agent's ``init`` raised; the process exits right after sending this."""

    error_type: str
    error: str


class Heartbeat(_Msg, tag="hb"):
    """Sent every heartbeat interval by the agent's event loop: proof it is not hung."""

    seq: int


class Reply(_Msg, tag="reply"):
    """The answer to a :class:`Call`. ``ok=False`` carries the handler's exception."""

    ref: int
    ok: bool
    payload: Any = None
    error_type: str = ""
    error: str = ""


class OutCall(_Msg, tag="ocall"):
    """This agent calls another agent (by registered name) through the node."""

    ref: int
    target: str
    payload: Any
    timeout: float
    trace: str = ""
    """The sender's span context (W3C ``traceparent``), "" when tracing is off."""


class OutCast(_Msg, tag="ocast"):
    """This agent casts to another agent (by registered name) through the node."""

    target: str
    payload: Any
    trace: str = ""
    """The sender's span context (W3C ``traceparent``), "" when tracing is off."""


class Exiting(_Msg, tag="exiting"):
    """The agent is about to exit 0 for ``reason`` (``shutdown``: it raised
    :class:`stalwart.errors.Shutdown`; ``detail`` is the exception's text, OTP's
    ``{shutdown, Reason}``). Without it, exit code 0 reads as ``normal``."""

    reason: str
    detail: str = ""


class LogLine(_Msg, tag="log"):
    """One rendered JSON log line of the agent, for the node's log pipeline and store."""

    line: str


class Publish(_Msg, tag="pub"):
    """An event the agent publishes on the node's event bus (``task.*`` names only: a
    task's streamed model text, for ``GET /v1/tasks/{id}/events``). The node adds the
    sending agent's name; it never trusts one sent in ``fields``."""

    name: str
    fields: dict[str, Any]


class MetricSamples(_Msg, tag="metrics"):
    """Metric changes recorded in the agent since its last heartbeat (see observe._ship)."""

    samples: list[dict[str, Any]]


Frame = (
    Call | Cast | Stop | Sync | CallResult | Ready | InitFailed | Heartbeat | Reply | OutCall
    | OutCast | LogLine | MetricSamples | Exiting | Publish
)  # fmt: skip

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Frame] = msgspec.msgpack.Decoder(Frame)


def encode_frame(msg: Frame) -> bytes:
    """Encode ``msg`` with its length prefix."""
    body = _encoder.encode(msg)
    return HEADER.pack(len(body)) + body


def decode_frame(body: bytes) -> Frame:
    """Decode one frame body (without its prefix); a bad body is a :class:`ProtocolError`."""
    try:
        return _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"unknown or malformed message type: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"undecodable frame ({len(body)} bytes): {exc}") from None


_SCALARS = (str, int, bool, type(None))


def check_json(value: Any, *, what: str = "payload") -> None:
    """Raise :class:`InvalidMessage` unless ``value`` is JSON-compatible data.

    The message names the first offending location, e.g.
    ``payload['items'][2] is a datetime``, so the sender can fix it.
    """
    _check(value, what, 0)


def _check(value: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidMessage(f"{path} is nested deeper than {MAX_DEPTH} levels")
    kind = type(value)
    if kind in _SCALARS:
        return
    if kind is float:
        if not math.isfinite(value):
            raise InvalidMessage(f"{path} is {value!r}, which JSON cannot represent")
        return
    if kind is list:
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]", depth + 1)
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise InvalidMessage(
                    f"{path} has a key {key!r} of type {type(key).__name__}; JSON keys are str"
                )
            _check(item, f"{path}[{key!r}]", depth + 1)
        return
    raise InvalidMessage(
        f"{path} is a {kind.__name__}, which is not JSON-compatible; send only "
        "None, bool, int, finite float, str, list and dict with str keys"
    )
