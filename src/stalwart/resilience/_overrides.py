"""Operator overrides of circuit breakers, shared by every process of a node through a file.

A breaker lives in the process that calls the dependency: each agent process
has its own. An operator forcing ``openai:gpt-4o`` open means every one of them,
including processes started later. So an override is written to one small
JSON file (``{"epoch": id, "seq": N, "breakers": {name: {"state": label, "seq": n}}}``)
whose path the node puts in the environment (:data:`OVERRIDES_ENV`) before it
starts its agent processes; each process applies the entries it has not seen
yet when its registry is refreshed (every heartbeat, see
:meth:`BreakerRegistry.refresh`), and a breaker created later starts in the
overridden state.

Writes are read-modify-write under an exclusive :func:`fcntl.flock` and land
with an atomic rename, so a reader never sees half a file. A process notices a
change within one heartbeat interval.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec

from stalwart.errors import ConfigError

__all__ = ["OVERRIDES_ENV", "OverrideEntry", "OverrideFile", "share_overrides"]

OVERRIDES_ENV = "STALWART_BREAKER_OVERRIDES"
"""Environment variable naming the node's breaker override file."""


class OverrideEntry(msgspec.Struct, frozen=True):
    """One breaker's override: the state an operator asked for, and its sequence number."""

    state: str
    seq: int


class _Overrides(msgspec.Struct):
    epoch: str = ""  # set when the file is created: sequence numbers count within one file
    seq: int = 0
    breakers: dict[str, OverrideEntry] = msgspec.field(default_factory=dict)


_decoder = msgspec.json.Decoder(_Overrides)


class OverrideFile:
    """The override file at ``path`` (created on the first write)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._seen_mtime: int | None = None

    def read(self) -> tuple[str, dict[str, OverrideEntry]]:
        """The file's epoch and every override in it (``("", {})`` if there is no file yet).

        The epoch changes when the file is created anew (a node restarted, a test
        cleared it): sequence numbers from another epoch mean nothing."""
        current = self._load()
        return current.epoch, current.breakers

    def changed(self) -> bool:
        """True if the file changed since the last :meth:`changed` that said so (one stat)."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return False
        if mtime == self._seen_mtime:
            return False
        self._seen_mtime = mtime
        return True

    def write(self, name: str, state: str) -> tuple[str, OverrideEntry]:
        """Record that ``name`` must be in ``state`` (a :class:`BreakerState` label); the
        file's epoch and the new entry."""
        with self._locked():
            current = self._load()
            if not current.epoch:
                current.epoch = uuid.uuid4().hex
            current.seq += 1
            entry = OverrideEntry(state=state, seq=current.seq)
            current.breakers[name] = entry
            data = msgspec.json.encode(current)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name + ".")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        return current.epoch, entry

    def _load(self) -> _Overrides:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return _Overrides()
        if not data.strip():
            return _Overrides()
        try:
            return _decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise ConfigError(
                f"breaker override file {self.path} is not valid ({exc}); delete it to clear "
                "every override"
            ) from exc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # no-deadline: held by a writer for one small read-modify-write, never longer
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def share_overrides(path: str | os.PathLike[str] | None = None) -> str:
    """Name the override file this process and the processes it starts share.

    Sets :data:`OVERRIDES_ENV` unless already set (a parent's choice wins) and
    returns the path in effect. Default: ``stalwart-breakers-<pid>.json`` in
    the temporary directory, emptied first: overrides last as long as the node
    process that was given them.
    """
    chosen = os.environ.get(OVERRIDES_ENV)
    if chosen:
        return chosen
    if path is None:
        path = Path(tempfile.gettempdir()) / f"stalwart-breakers-{os.getpid()}.json"
        # left by an earlier process that had this pid: its orders are not this node's
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    os.environ[OVERRIDES_ENV] = str(path)
    return str(path)
