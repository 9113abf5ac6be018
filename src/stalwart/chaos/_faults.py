"""The faults: what each one does to the running system, and how it is undone.

=================  ==============================================  ===========================
kind               what it does                                    undone by
=================  ==============================================  ===========================
agent_kill         SIGKILL an agent process                        its supervisor's restart
node_kill          SIGKILL a whole node: the second node's         it is started again after
                   process group (node, fork server, agents)       ``duration``; meanwhile the
                                                                   other node takes its tasks
agent_stop         SIGSTOP an agent process (a hang)               SIGCONT after ``duration``
sim                a sim fault (outage, status/error_rate,         ``clear_faults(target)``
                   latency, hang) on a model or ``tool:NAME``
proxy              latency, black hole or resets on the TCP link   ``proxy.clear()``
                   from the agents to the sim, or (``tool:NAME``)
                   to a tool's upstream, through a fault proxy
                   given to the run (``ChaosConfig.tool_proxies``)
store_lock         an exclusive SQLite write lock held for         ROLLBACK (and it dies with
                   ``duration`` (the store is unavailable)         the process)
journal_corrupt    flip a byte of a running task's journal         the runtime: the record is
                   record, then SIGKILL its owner so it replays    quarantined, the step redone
file_corrupt       flip a byte of such a record in the SQLite      the same
                   database file itself (after a checkpoint)
disk_full          fill the store's size-limited filesystem        the filler file is deleted
pg_restart         run the operator's PostgreSQL restart command   the command itself (opt-in
                   (``--pg-restart-cmd``; never by default)        only: it restarts a server)
=================  ==============================================  ===========================

Each injector applies its fault and returns a description and an undo action;
:func:`inject` registers the undo on the run's :class:`UndoStack` in the same
synchronous step, keeps the fault for its ``duration`` and undoes it (so no
fault outlives its time, and none outlives the run). Faults that target a
record only touch ``step`` records of model calls and read-only tools, whose
re-execution is safe; side-effect records are never damaged (their ledger is
what prevents duplicates, and damaging it is a different experiment).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pathlib
import shlex
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from stalwart.chaos._target import Target
from stalwart.durable._integrity import decode_record
from stalwart.errors import StalwartError

__all__ = ["KINDS", "OPT_IN", "FaultOutcome", "FaultSpec", "inject"]

KINDS = (
    "agent_kill",
    "node_kill",
    "agent_stop",
    "sim",
    "proxy",
    "store_lock",
    "journal_corrupt",
    "file_corrupt",
    "disk_full",
)

OPT_IN = ("pg_restart",)
"""Kinds never in the default mix: each needs the operator to ask for it."""


def _safe_records(t: Target) -> tuple[str, tuple[str, ...]]:
    """The journal records safe to damage (re-running them delivers nothing twice): model
    steps and the steps of the app's tools without side effects. SQL and its parameters."""
    return safe_clause(
        sorted(
            f"tool:{tool.name}"
            for agent in t.service.app.agents
            for tool in agent.tools
            if not tool.side_effect
        )
    )


def safe_clause(read_steps: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """The SQL that selects model steps and the steps named ``read_steps``, its parameters."""
    reads = tuple(read_steps)
    marks = ", ".join("?" for _ in reads)
    names = f" OR j.name IN ({marks})" if reads else ""
    return f"j.kind = 'step' AND (j.name = 'model'{names})", reads


@dataclasses.dataclass(frozen=True, slots=True)
class FaultSpec:
    """One planned fault: its kind, when (seconds into the run), how long, on what."""

    kind: str
    at: float
    duration: float
    target: str = ""
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class FaultOutcome:
    """What became of one fault."""

    spec: FaultSpec
    status: str = "planned"  # applied | skipped | error
    detail: str = ""
    started: float | None = None
    ended: float | None = None
    task_id: str | None = None
    detected: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.spec.kind,
            "at": round(self.spec.at, 3),
            "duration": self.spec.duration,
            "target": self.spec.target,
            "params": self.spec.params,
            "status": self.status,
            "detail": self.detail,
            "task_id": self.task_id,
            "detected": self.detected,
        }


class Skip(Exception):
    """The fault does not apply now (no such process, no running task…): say why."""


Undo = Callable[[], None] | None
_T = TypeVar("_T")

PICK_SECONDS = 1.5
"""How long a corruption fault looks for a running task with a journal record to damage."""


def _pid(t: Target, agent: str) -> int:
    ref = t.node.runtime.whereis(agent)
    if ref is None:
        raise Skip(f"agent {agent!r} is not running (restarting)")
    return ref.pid


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _connect(t: Target) -> sqlite3.Connection:
    # A raw connection on purpose, beside the database kernel: the faults need what the
    # kernel never does -- hold the file's write lock from outside the node (store_lock)
    # and overwrite a stored record behind the store's back (journal/file corruption).
    if t.store_path is None:
        raise Skip("the store is not a SQLite file")
    return sqlite3.connect(t.store_path, isolation_level=None, timeout=5, check_same_thread=False)


def _intact(task_id: str, seq: int, record: bytes) -> bool:
    try:
        decode_record(task_id, seq, record)
    except StalwartError:
        return False
    return True


def _pick_record(
    conn: sqlite3.Connection, safe: tuple[str, tuple[str, ...]]
) -> tuple[str, int, bytes, str]:
    """A running task's newest safe record that is intact. A record an earlier fault
    damaged (and nothing has read yet) is never picked again: the flip is its own
    inverse, so a second one would repair it and the first damage could never be found
    (seen: one record of a task slowed by the other faults damaged twice, "undetected")."""
    clause, params = safe
    rows = conn.execute(
        "SELECT j.task_id, j.seq, j.record, t.lease_owner FROM stalwart_journal j "
        "JOIN stalwart_tasks t ON t.id = j.task_id "
        f"WHERE t.status = 'running' AND {clause} AND j.record IS NOT NULL "
        "ORDER BY j.seq DESC, random() LIMIT 50",
        params,
    ).fetchall()
    for task_id, seq, record, owner in rows:
        if _intact(str(task_id), int(seq), bytes(record)):
            return str(task_id), int(seq), bytes(record), str(owner or "")
    raise Skip("no running task has an intact journal record to damage")


def _within(seconds: float, attempt: Callable[[], _T]) -> _T:
    """``attempt()`` until it does not :class:`Skip`, for at most ``seconds`` (in a thread)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return attempt()
        except Skip:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)  # poll for a task mid-flight: there is no event to wait on


def _flip(record: bytes) -> bytes:
    i = len(record) - 2 if len(record) > 13 else len(record) - 1  # inside the JSON body
    return record[:i] + bytes([record[i] ^ 0x01]) + record[i + 1 :]


def _kill_owner(t: Target, owner: str) -> str:
    node, _, agent = owner.rpartition("/")
    if node != t.node.id:
        return f"owner {owner} is on another node (the final audit reads its journal)"
    ref = t.node.runtime.whereis(agent)
    if ref is None:
        return "its owner is restarting (it replays on start)"
    _signal(ref.pid, signal.SIGKILL)
    return f"owner {agent} (pid {ref.pid}) SIGKILLed to replay it"


def _journal_corrupt(t: Target, spec: FaultSpec, out: FaultOutcome) -> Undo:
    conn = _connect(t)
    try:
        safe = _safe_records(t)
        task_id, seq, record, owner = _within(PICK_SECONDS, lambda: _pick_record(conn, safe))
        conn.execute(
            "UPDATE stalwart_journal SET record = ? WHERE task_id = ? AND seq = ?",
            (_flip(record), task_id, seq),
        )
    finally:
        conn.close()
    out.task_id = task_id
    out.detail = f"record {task_id}#{seq} damaged; " + _kill_owner(t, owner)
    return None


def _file_corrupt(t: Target, spec: FaultSpec, out: FaultOutcome) -> Undo:
    path = t.store_path
    if path is None:
        raise Skip("the store is not a SQLite file")

    def locate() -> tuple[str, int, bytes, str, int]:
        conn = _connect(t)
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            task_id, seq, record, owner = _pick_record(conn, _safe_records(t))
        finally:
            conn.close()
        # only the main file: a damaged WAL frame would silently drop committed transactions
        offset = path.read_bytes().find(record)
        if offset < 0:
            raise Skip(f"record {task_id}#{seq} is not in the main file yet (still in the WAL)")
        return task_id, seq, record, owner, offset

    task_id, seq, record, owner, offset = _within(PICK_SECONDS, locate)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, _flip(record), offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    out.task_id = task_id
    out.detail = f"byte at file offset {offset} of {task_id}#{seq} flipped; " + _kill_owner(
        t, owner
    )
    return None


def _store_lock(t: Target, spec: FaultSpec, out: FaultOutcome) -> Undo:
    conn = _connect(t)
    conn.execute("PRAGMA busy_timeout=2000")
    try:
        conn.execute("BEGIN EXCLUSIVE")
    except sqlite3.OperationalError as exc:
        conn.close()
        raise Skip(f"could not take the store lock: {exc}") from None
    out.detail = f"exclusive lock on {t.store_path.name if t.store_path else '?'}"

    def release() -> None:
        try:
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    return release


def _disk_full(t: Target, spec: FaultSpec, out: FaultOutcome) -> Undo:
    if t.quota_dir is None:
        raise Skip("the store is not on a size-limited filesystem (use --store-quota-mb as root)")
    filler = pathlib.Path(t.quota_dir) / f"stalwart-chaos-fill-{os.getpid()}"
    free = os.statvfs(t.quota_dir).f_bavail * os.statvfs(t.quota_dir).f_frsize
    written = 0
    with open(filler, "wb") as f:
        chunk = b"\0" * (1 << 20)
        while written < free + (1 << 20):
            try:
                f.write(chunk[: min(len(chunk), free + (1 << 20) - written)])
                f.flush()
            except OSError:
                break
            written += len(chunk)
    out.detail = f"filled {written >> 20} MiB of the store's filesystem"
    return lambda: filler.unlink(missing_ok=True)


def _pg_restart(t: Target, spec: FaultSpec, out: FaultOutcome) -> Undo:
    cmd = str(spec.params.get("cmd") or "")
    if not cmd:
        raise Skip("no --pg-restart-cmd: restarting a database server is opt-in")
    if not t.store_url.startswith(("postgresql://", "postgres://")):
        raise Skip("the store is not PostgreSQL")
    started = time.monotonic()
    done = subprocess.run(shlex.split(cmd), capture_output=True, timeout=120, check=False)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise OSError(f"{cmd!r} exited {done.returncode}: {done.stderr[-300:]!r}")
    out.detail = f"PostgreSQL restarted by {cmd!r} in {took:.2f} s"
    return None


def _apply(t: Target, spec: FaultSpec, out: FaultOutcome) -> Undo:
    kind = spec.kind
    if kind == "agent_kill":
        pid = _pid(t, spec.target)
        _signal(pid, signal.SIGKILL)
        out.detail = f"{spec.target} pid {pid} SIGKILLed"
        return None
    if kind == "node_kill":
        peer = t.peer
        if peer is None:
            raise Skip("no second node to kill (chaos --peer-node)")
        if not peer.alive:
            raise Skip("the second node is restarting")
        node_id = peer.node_id
        pid = peer.kill()
        out.detail = (
            f"node {node_id} (process group {pid}: node, fork server, agents) SIGKILLed; "
            f"restarted after {spec.duration:g} s"
        )

        def restart() -> None:
            if not peer.closing:
                peer.start()

        return restart
    if kind == "agent_stop":
        pid = _pid(t, spec.target)
        # a watchdog in its own session continues the agent even if this command is
        # SIGKILLed before its undo runs: the hang stays bounded in every case
        watchdog = subprocess.Popen(
            ["sh", "-c", f"sleep {spec.duration + 1.0:.2f}; kill -CONT {pid} 2>/dev/null"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _signal(pid, signal.SIGSTOP)
        out.detail = f"{spec.target} pid {pid} SIGSTOPped for {spec.duration:g} s"

        def resume() -> None:
            _signal(pid, signal.SIGCONT)
            watchdog.kill()
            watchdog.wait(timeout=5)

        return resume
    if kind == "sim":
        if t.sim is None:
            raise Skip("the app does not use the sim")
        world = t.sim.world
        world.set_fault(spec.target, **spec.params)
        out.detail = f"sim fault on {spec.target}: {spec.params}"
        return lambda: world.clear_faults(spec.target)
    if kind == "proxy":
        if spec.target.startswith("tool:"):
            tool_proxy = t.tool_proxies.get(spec.target.removeprefix("tool:"))
            if tool_proxy is None:
                raise Skip(f"no fault proxy in front of {spec.target}'s upstream")
            tool_proxy.set(**spec.params)
            out.detail = f"proxy fault on {spec.target}'s upstream: {spec.params}"
            return tool_proxy.clear
        if t.proxy is None:
            raise Skip("no fault proxy (the app does not use the sim, or --no-proxy)")
        proxy = t.proxy
        proxy.set(**spec.params)
        out.detail = f"proxy fault: {spec.params}"
        return proxy.clear
    if kind == "journal_corrupt":
        return _journal_corrupt(t, spec, out)
    if kind == "file_corrupt":
        return _file_corrupt(t, spec, out)
    if kind == "store_lock":
        return _store_lock(t, spec, out)
    if kind == "disk_full":
        return _disk_full(t, spec, out)
    if kind == "pg_restart":
        return _pg_restart(t, spec, out)
    raise Skip(f"unknown fault kind {kind!r}")


async def inject(t: Target, spec: FaultSpec) -> FaultOutcome:
    """Apply ``spec``, keep it for its duration, undo it (see the module docstring)."""
    out = FaultOutcome(spec, started=time.monotonic())
    blocking = spec.kind in (
        "journal_corrupt",
        "file_corrupt",
        "store_lock",
        "disk_full",
        "node_kill",
        "pg_restart",
    )
    try:
        if blocking:
            undo = await asyncio.to_thread(_apply, t, spec, out)
        else:
            undo = _apply(t, spec, out)
    except Skip as exc:
        out.status, out.detail, out.ended = "skipped", str(exc), time.monotonic()
        return out
    except (OSError, sqlite3.Error, subprocess.SubprocessError) as exc:
        out.status, out.detail, out.ended = "error", repr(exc), time.monotonic()
        return out
    token = t.undo.push(f"{spec.kind}:{spec.target}", undo) if undo is not None else None
    out.status = "applied"
    try:
        if token is not None:
            await asyncio.sleep(spec.duration)  # the fault's time in force
    finally:
        if token is not None:
            await asyncio.to_thread(t.undo.run, token) if blocking else t.undo.run(token)
        out.ended = time.monotonic()
    return out
