"""Record encoding with a format version and a checksum, JSON validation, and recovery planning.

Every record the store writes (task input and outcome, journal entry, ledger entry)
is ``header + body``: the header carries a magic, the format version, a CRC-32 and
the body length; the body is msgspec JSON. The checksum covers the owning task's id
and the record's position as well as the body, so a record copied under another
task or another position is as detectable as a flipped byte or a truncation.

CRC-32 (zlib, hardware-assisted) was chosen over a cryptographic hash: the threat is
storage damage, not an adversary, and it keeps per-step cost in the low microseconds.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import zlib
from collections.abc import Iterable
from typing import Any

import msgspec

from stalwart.errors import CorruptRecord, IncompatibleFormat, InvalidMessage

__all__ = [
    "FORMAT_VERSION",
    "Decoded",
    "RawRow",
    "RecoveryPlan",
    "check_json",
    "decode_record",
    "encode_record",
    "journal_body",
    "plan_recovery",
]

FORMAT_VERSION = 1
"""Version of the record layout. A newer version is left alone (:class:`IncompatibleFormat`,
for a newer node to handle); an older or unknown one is treated as corrupt."""

_MAGIC = b"SW"
_HEADER = struct.Struct(">2sBII")  # magic, version, crc32, body length
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder()
_MAX_DEPTH = 64


def check_json(value: Any, what: str) -> None:
    """Raise :class:`InvalidMessage` unless ``value`` is plain JSON data.

    Plain means None, bool, int, float (finite), str, list, and dict with str keys.
    msgspec alone would also accept tuples, sets, datetimes and NaN (written as
    ``null``); each would come back as something else on replay, so a resumed task
    would see different data than the original run. Rejecting them here keeps
    replay exact. ``what`` names the value in the message (e.g. "step 'fetch' result").
    """
    if not _plain(value):  # found where and what only for a value that is not
        _check(value, what, "$", 0)


def _plain(value: Any) -> bool:
    """Whether ``value`` is plain JSON data by :func:`_check`'s rules, walked without
    recursion or paths (half the time of :func:`_check` on a tool's result)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        if depth > _MAX_DEPTH:
            return False
        kind = type(item)
        if kind is str or kind is int or item is None or kind is bool:
            continue
        if kind is dict or (kind is not list and isinstance(item, dict)):
            for key, inner in item.items():
                if type(key) is not str and not isinstance(key, str):
                    return False
                push((inner, depth + 1))
        elif kind is list or isinstance(item, list):
            for inner in item:
                push((inner, depth + 1))
        elif isinstance(item, float):
            if not math.isfinite(item):
                return False
        elif not isinstance(item, int | str):  # (subclasses; bool is an int)
            return False
    return True


def _check(value: Any, what: str, path: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise InvalidMessage(f"{what} is nested deeper than {_MAX_DEPTH} levels at {path}")
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidMessage(f"{what} contains the non-finite float {value!r} at {path}")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check(item, what, f"{path}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidMessage(
                    f"{what} has a non-string dict key {key!r} at {path}; JSON keys are strings"
                )
            _check(item, what, f"{path}.{key}", depth + 1)
        return
    raise InvalidMessage(
        f"{what} contains a {type(value).__name__} at {path}; it must be JSON-compatible "
        "data (None, bool, int, float, str, list, dict with str keys)"
    )


def _crc(scope: str, position: int, version: int, body: bytes) -> int:
    # The version is covered too: a flipped version byte is damage, never "a newer format".
    crc = zlib.crc32(scope.encode())
    crc = zlib.crc32(position.to_bytes(8, "big", signed=True), crc)
    crc = zlib.crc32(bytes((version,)), crc)
    return zlib.crc32(body, crc)


def encode_record(scope: str, position: int, value: Any) -> bytes:
    """Encode ``value`` (already checked JSON) as a checksummed record owned by ``scope``."""
    body = _ENCODER.encode(value)
    crc = _crc(scope, position, FORMAT_VERSION, body)
    return _HEADER.pack(_MAGIC, FORMAT_VERSION, crc, len(body)) + body


def decode_record(scope: str, position: int, record: bytes | memoryview | None) -> Any:
    """Decode a record, verifying magic, version, length and checksum.

    Raises :class:`CorruptRecord` naming what failed; never returns damaged data.
    """
    if record is None:
        raise CorruptRecord(f"record {scope}#{position} is missing")
    data = bytes(record)
    if len(data) < _HEADER.size:
        raise CorruptRecord(f"record {scope}#{position} is truncated ({len(data)} bytes)")
    magic, version, crc, length = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise CorruptRecord(f"record {scope}#{position} has a bad magic {magic!r}")
    body = data[_HEADER.size :]
    if len(body) != length:
        raise CorruptRecord(
            f"record {scope}#{position} is truncated or padded: "
            f"body {len(body)} bytes, header says {length}"
        )
    if _crc(scope, position, version, body) != crc:
        raise CorruptRecord(f"record {scope}#{position} failed its checksum")
    if version > FORMAT_VERSION:  # intact, and written by a newer stalwart
        raise IncompatibleFormat(
            f"record {scope}#{position} has format version {version}, newer than the "
            f"{FORMAT_VERSION} this stalwart reads: a newer node wrote it; leaving the task "
            "to a node that can read it"
        )
    if version != FORMAT_VERSION:
        raise CorruptRecord(
            f"record {scope}#{position} has format version {version}; "
            f"this stalwart reads version {FORMAT_VERSION}"
        )
    try:
        return _DECODER.decode(body)
    except msgspec.DecodeError as exc:  # only reachable if the checksum collided
        raise CorruptRecord(f"record {scope}#{position} does not decode: {exc}") from exc


@dataclasses.dataclass(frozen=True, slots=True)
class RawRow:
    """A journal row as a backend read it: columns plus the undecoded record."""

    seq: int
    kind: str
    name: str
    record: bytes | None


@dataclasses.dataclass(frozen=True, slots=True)
class Decoded:
    """A journal row that passed its checks."""

    seq: int
    kind: str
    name: str
    value: Any


@dataclasses.dataclass(frozen=True, slots=True)
class RecoveryPlan:
    """What to keep and what to quarantine after reading a task's journal.

    ``quarantine`` holds ``(seq, reason)`` pairs: corrupt rows, and the good rows
    that depend on a lost one (everything after the first damage past the last
    good checkpoint), because their values were computed from what was lost.
    """

    keep: list[Decoded]
    quarantine: list[tuple[int, str]]


def _decode_row(task_id: str, row: RawRow) -> Decoded:
    body = decode_record(task_id, row.seq, row.record)
    if not isinstance(body, dict) or set(body) != {"k", "n", "d"}:
        raise CorruptRecord(f"record {task_id}#{row.seq} has an unexpected shape")
    if body["k"] != row.kind or body["n"] != row.name:
        raise CorruptRecord(
            f"record {task_id}#{row.seq} columns ({row.kind}, {row.name!r}) disagree "
            f"with its checksummed body ({body['k']}, {body['n']!r})"
        )
    return Decoded(row.seq, row.kind, row.name, body["d"])


def journal_body(kind: str, name: str, value: Any) -> dict[str, Any]:
    """The checksummed body of a journal record: kind and name are inside, not only columns."""
    return {"k": kind, "n": name, "d": value}


def plan_recovery(task_id: str, rows: Iterable[RawRow]) -> RecoveryPlan:
    """Decide which journal rows survive.

    Rules: a corrupt row is quarantined. The task resumes from its last good
    checkpoint (or the start); the first damage after that point -- a corrupt row
    or a gap in the sequence -- ends the usable journal, and every row from there
    on is quarantined too, so the task re-executes from the damage instead of
    mixing lost and surviving values.
    """
    good: list[Decoded] = []
    bad: dict[int, str] = {}
    for row in sorted(rows, key=lambda r: r.seq):
        try:
            good.append(_decode_row(task_id, row))
        except CorruptRecord as exc:
            bad[row.seq] = str(exc)
    checkpoints = [d.seq for d in good if d.kind == "checkpoint"]
    base = max(checkpoints) if checkpoints else -1
    expected = base + 1
    cut: int | None = None
    for d in good:
        if d.seq <= base:
            continue
        if d.seq != expected:
            cut = expected
            break
        expected += 1
    if cut is None and any(seq > base for seq in bad):
        cut = min(seq for seq in bad if seq > base)
    keep: list[Decoded] = []
    quarantine = dict(bad)
    for d in good:
        if cut is not None and d.seq >= cut:
            quarantine[d.seq] = f"follows damaged record #{cut}"
        else:
            keep.append(d)
    return RecoveryPlan(keep, sorted(quarantine.items()))
