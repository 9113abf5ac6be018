"""The file's write lock: writers of several processes take turns on an ``flock`` of
``NAME-lock`` before each write transaction (``stalwart.db._filelock``)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import pathlib
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator

import pytest

from stalwart.db import Component, Program, SQLiteDatabase
from stalwart.db._filelock import LOCK_SUFFIX
from stalwart.db._metrics import WRITE_LOCK_WAIT
from stalwart.errors import StoreUnavailable

pytestmark = pytest.mark.timeout(60)

NOTES = Component("notes", (("CREATE TABLE notes (id TEXT PRIMARY KEY)",),))


def insert(note_id: str) -> Program[None]:
    yield ("INSERT INTO notes (id) VALUES (?)", (note_id,))


def ids() -> Program[list[str]]:
    return [str(r[0]) for r in (yield ("SELECT id FROM notes ORDER BY id", ())).rows]


@contextlib.asynccontextmanager
async def notes_at(path: pathlib.Path) -> AsyncIterator[SQLiteDatabase]:
    """A real SQLite file with the notes table, closed after the block."""
    db = SQLiteDatabase(path)
    await db.open()
    try:
        await db.migrate(NOTES)
        yield db
    finally:
        await db.close()


class Holder:
    """The lock taken the way another process's writer takes it: its own open file
    description (``flock`` locks conflict between descriptions, in one process too)."""

    def __init__(self, db_path: pathlib.Path) -> None:
        self.fd = os.open(str(db_path) + LOCK_SUFFIX, os.O_RDWR | os.O_CREAT, 0o644)

    def take(self) -> None:
        """Wait for the lock (the store's writer lets go of it just after it answers)."""
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def give_back(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def holder(tmp_path: pathlib.Path) -> Iterator[Holder]:
    found = Holder(tmp_path / "w.db")
    yield found
    found.close()


async def test_a_write_waits_for_the_lock_and_a_caller_that_gave_up_is_not_written(
    tmp_path: pathlib.Path, holder: Holder
) -> None:
    async with notes_at(tmp_path / "w.db") as db:
        waits_before = WRITE_LOCK_WAIT._sum.get()
        await asyncio.to_thread(holder.take)
        # reads take no write lock
        assert await db.read(ids) == []
        # the writer waits on the lock, not in SQLite (whose lock is free): the caller's
        # deadline ends its wait, with the store's usual error
        with pytest.raises(StoreUnavailable, match=r"did not answer within 0\.3 s"):
            await db.write(insert, "given-up", timeout=0.3)
        # a write queued behind the wait commits once the lock is given back; the job
        # whose caller gave up does not run
        later = asyncio.ensure_future(db.write(insert, "later"))
        holder.give_back()
        await asyncio.wait_for(later, 10)
        assert await db.read(ids) == ["later"]
        assert WRITE_LOCK_WAIT._sum.get() > waits_before  # the wait is measured


async def test_a_writer_opened_while_another_process_writes_still_takes_the_lock(
    tmp_path: pathlib.Path, holder: Holder
) -> None:
    # the lock is opened (and flock checked to work) by the writer's first write: if the
    # lock is held right then, that is no sign flock fails here
    async with notes_at(tmp_path / "w.db"):
        pass
    await asyncio.to_thread(holder.take)
    db = SQLiteDatabase(tmp_path / "w.db")  # a new process's writer would open as this
    await db.open()
    try:
        with pytest.raises(StoreUnavailable, match=r"within 0\.5 s"):
            await db.write(insert, "waits", timeout=0.5)
        holder.give_back()
        await db.write(insert, "then")
        assert await db.read(ids) == ["then"]
    finally:
        holder.give_back()
        await db.close()


async def test_writers_in_several_processes_lose_nothing(tmp_path: pathlib.Path) -> None:
    """Three processes writing one file at once, with no pause: every row is there."""
    path = tmp_path / "many.db"
    script = textwrap.dedent(
        """
        import asyncio, sys
        from stalwart.db import SQLiteDatabase

        def insert(note_id):
            yield ("INSERT INTO notes (id) VALUES (?)", (note_id,))

        async def main() -> None:
            db = SQLiteDatabase(sys.argv[1])
            await db.open()
            await asyncio.gather(*(db.write(insert, f"{sys.argv[2]}-{n}") for n in range(150)))
            await db.close()

        asyncio.run(main())
        """
    )
    async with notes_at(path) as db:
        await many_processes_write(db, path, script)


async def many_processes_write(db: SQLiteDatabase, path: pathlib.Path, script: str) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(path), name]) for name in ("a", "b")
    ]
    try:
        await asyncio.gather(*(db.write(insert, f"c-{n}") for n in range(150)))
        for proc in procs:
            assert await asyncio.to_thread(proc.wait, 45) == 0
        found = await db.read(ids)
        assert len(found) == 450
        assert {x.split("-")[0] for x in found} == {"a", "b", "c"}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def test_a_holder_killed_mid_lock_releases_it(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "k.db"
    hold = textwrap.dedent(
        """
        import fcntl, os, sys, time
        fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("held", flush=True)
        time.sleep(60)
        """
    )
    async with notes_at(path) as db:
        await killed_holder(db, path, hold)


async def killed_holder(db: SQLiteDatabase, path: pathlib.Path, hold: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", hold, str(path) + LOCK_SUFFIX], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert await asyncio.to_thread(proc.stdout.readline) == "held\n"
        pending = asyncio.ensure_future(db.write(insert, "after-kill"))
        proc.kill()
        await asyncio.wait_for(pending, 10)  # the kernel released the dead holder's lock
        assert await db.read(ids) == ["after-kill"]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


async def test_a_forked_child_keeps_no_copy_of_the_descriptor(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "f.db"
    async with notes_at(path) as db:
        await db.write(insert, "one")  # the lock file is open in this process now
        lock_file = os.path.realpath(str(path) + LOCK_SUFFIX)

        def holds_it(pid: int) -> bool:
            fds = pathlib.Path(f"/proc/{pid}/fd")
            return any(os.path.realpath(fd) == lock_file for fd in fds.iterdir())

        assert holds_it(os.getpid())
        pid = os.fork()
        if pid == 0:  # the child: report and leave without running any cleanup
            os._exit(1 if holds_it(os.getpid()) else 0)
        _, status = await asyncio.to_thread(os.waitpid, pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


async def test_without_a_usable_lock_file_writes_go_on(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "d.db"
    (tmp_path / ("d.db" + LOCK_SUFFIX)).mkdir()  # a directory where the lock file goes
    async with notes_at(path) as db:
        await db.write(insert, "still")
        assert await db.read(ids) == ["still"]


async def test_a_cancelled_callers_write_still_lands_and_a_blocking_caller_gives_up(
    tmp_path: pathlib.Path, holder: Holder
) -> None:
    # a cancelled caller's job runs, as it always did (a side effect's outcome record is
    # worth keeping for the task's resume); a blocking caller past its deadline is skipped
    async with notes_at(tmp_path / "w.db") as db:
        await asyncio.to_thread(holder.take)
        cancelled = asyncio.ensure_future(db.write(insert, "cancelled"))
        await asyncio.sleep(0)  # let it reach the writer's queue
        cancelled.cancel()
        quick = SQLiteDatabase(tmp_path / "w.db", timeout=0.5)  # shares the writer
        await quick.open()
        try:
            with pytest.raises(StoreUnavailable, match=r"within 0\.5 s"):
                await asyncio.to_thread(quick.run_blocking, insert, "blocking")
        finally:
            holder.give_back()
            await quick.close()
        await db.write(insert, "after")
        assert await db.read(ids) == ["after", "cancelled"]


async def test_a_lock_that_stops_working_is_given_up_and_writes_go_on(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a file system that refuses flock after the probe (ENOLCK from a network mount):
    # the writer logs it once and writes under SQLite's own lock, its thread alive
    real = fcntl.flock

    def refusing(fd: int, op: int) -> None:
        if op == fcntl.LOCK_EX:
            raise OSError(errno.ENOLCK, "No locks available")
        real(fd, op)

    async with notes_at(tmp_path / "n.db") as db:
        monkeypatch.setattr("stalwart.db._filelock.fcntl.flock", refusing)
        await db.write(insert, "one")
        await db.write(insert, "two")
        assert await db.read(ids) == ["one", "two"]
