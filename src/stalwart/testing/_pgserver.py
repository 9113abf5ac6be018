"""A private PostgreSQL server a test starts, restarts and kills itself.

:class:`PostgresServer` runs ``initdb`` and ``pg_ctl`` (as the ``postgres`` user
when the test runs as root) in a temporary directory, on a free port, so a
fault test can restart the server (``pg_ctl restart -m fast``) or SIGKILL it and
start it again without touching the shared server other tests use. It needs the
PostgreSQL server binaries (``/usr/lib/postgresql/*/bin``); :func:`pg_binaries`
returns None when they are absent, for the test to skip with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any

from stalwart.durable import JournalEntry, Store
from stalwart.errors import LeaseLost, StoreError, StoreUnavailable

__all__ = [
    "PostgresServer", "fault_and_recover", "pg_binaries", "start_like_a_node", "store_fault_worker",
]  # fmt: skip


def pg_binaries() -> pathlib.Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` holding initdb and pg_ctl, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        return None
    folder = pathlib.Path(found[-1]).parent
    return folder if (folder / "pg_ctl").exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """A throwaway server: ``start()``, ``restart()``, ``kill()``, ``stop()``; ``url``."""

    def __init__(self, *, timeout: float = 60.0) -> None:
        binaries = pg_binaries()
        if binaries is None:
            raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql")
        self.bin = binaries
        self.timeout = timeout
        self.port = _free_port()
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="stalwart-pg-"))
        self.data = self.root / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=self.timeout)

    def start(self) -> None:
        if not self.data.exists():
            self._run(
                str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                "--auth=trust", "--no-sync",
            )  # fmt: skip
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=60"
        )
        deadline = time.monotonic() + self.timeout
        while True:  # after a SIGKILL the old backends may still hold shared memory briefly
            try:
                self._run(
                    str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                    "-l", str(self.root / "log"), "-w", "-t", "30", "start",
                )  # fmt: skip
                return
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # no-deadline: bounded by the loop's deadline

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is closed by the server."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.start()

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill(self) -> None:
        """SIGKILL the postmaster (its backends exit on their own) and wait for it."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)  # no-deadline: bounded by the loop's deadline

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run(
                str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def store_fault_worker(
    store: Store, owner: str, done: list[str], errors: list[str], progress: asyncio.Event
) -> None:
    """Run a store's tasks to the end while faults hit it (the fault tests and
    ``bench/faults_database.py`` run several at once): acquire, journal two steps,
    finish -- retrying what a fault made unavailable, and resolving every operation
    whose outcome a fault left unknown by reading what is stored. Finished task ids go
    to ``done`` (``progress`` is set after each), every fault seen to ``errors``."""
    while True:
        try:
            lease = await store.acquire(owner, 30)
        except StoreUnavailable as exc:
            errors.append(f"acquire: {exc}")
            continue
        if lease is None:
            return
        entries = [JournalEntry(0, "step", "a", 1), JournalEntry(1, "step", "b", 2)]
        for op in ("append", "finish"):
            while True:
                try:
                    if op == "append":
                        await store.append(lease, entries)
                    else:
                        await store.finish(lease, "succeeded", lease.task_id)
                    break
                except StoreUnavailable as exc:  # e.g. "during commit: the outcome is unknown"
                    errors.append(f"{op}: {exc}")
                except (LeaseLost, StoreError):
                    # The earlier attempt committed after all: what is stored says so.
                    task = await store.get_task(lease.task_id)
                    journal = await store.load_journal(lease.task_id)
                    if op == "append" and len(journal.entries) == 2:
                        break
                    if op == "finish" and task is not None and task.status == "succeeded":
                        break
                    raise
        done.append(lease.task_id)
        progress.set()


async def fault_and_recover(
    server: PostgresServer,
    fault: str,
    done: list[str],
    workers: list[asyncio.Task[None]],
    progress: asyncio.Event,
    *,
    down_s: float,
) -> float:
    """Restart (``fault="restart"``) or SIGKILL the server (``"kill"``: started again
    ``down_s`` later) while :func:`store_fault_worker` s run; seconds from the fault to
    the first task finished after it (or to the workers' end)."""
    before = len(done)
    started = time.monotonic()
    if fault == "restart":
        await asyncio.to_thread(server.restart)
    else:
        await asyncio.to_thread(server.kill)
        await asyncio.sleep(down_s)  # the database is down for a while
        await asyncio.to_thread(server.start)
    while True:
        progress.clear()  # before looking: a finish after the look wakes the wait
        if len(done) != before or all(w.done() for w in workers):
            return time.monotonic() - started
        async with asyncio.timeout(60):
            await progress.wait()


def start_like_a_node(url: str, barrier: Any, errors: Any) -> None:
    """What a node does first, in a forked process: open the store and the guard's tables
    (both migrate), at the moment ``barrier`` lets every process go; a failure goes to
    the ``errors`` queue (and the exit code)."""
    from stalwart.durable import PostgresStore
    from stalwart.guard._db import GuardDB

    async def main() -> None:
        store = PostgresStore(url)
        await store.open()
        await store.close()

    try:
        barrier.wait(30)  # every process starts migrating at the same moment
        asyncio.run(main())
        GuardDB(url).execute("SELECT count(*) FROM guard_spend")
    except BaseException as exc:
        errors.put(f"{type(exc).__name__}: {exc}")
        raise
