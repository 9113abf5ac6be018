"""An agent whose SQLite writer thread is always inside SQLite while it runs sync tools
in forked children (``stalwart.tools._subprocess.run_in_child``), as an app agent
journals while its sync tools run: the shape in which tool children were found blocked
on a futex, and orphaned once their agent was killed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import sqlite3
import time
from typing import Any

from stalwart import Agent
from stalwart.db import Program, Result, SQLiteDatabase
from stalwart.tools._subprocess import run_in_child


def _create() -> Program[None]:
    yield ("CREATE TABLE IF NOT EXISTS churn (n INTEGER, pad TEXT)", ())


def _insert(n: int) -> Program[int]:
    # many rows of text: the writer thread spends its time in SQLite's allocator
    res: Result = yield (
        "INSERT INTO churn SELECT ?, hex(randomblob(64)) FROM "
        "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200) "
        "SELECT x FROM c)",
        (n,),
    )
    return res.rowcount


def lookup(path: str) -> int:
    """A sync tool that opens a database, as the warehouse's ``check_stock`` does."""
    conn = sqlite3.connect(path, timeout=5)
    try:
        return int(conn.execute("SELECT 41 + 1").fetchone()[0])
    finally:
        conn.close()


def wait_forever(pidfile: str) -> None:
    """A sync tool that never returns (a blocked child), after saying which pid it is."""
    tmp = f"{pidfile}.tmp"
    pathlib.Path(tmp).write_text(str(os.getpid()))
    os.replace(tmp, pidfile)
    while True:
        time.sleep(3600)


class ForkingAgent(Agent):
    max_concurrency = 4

    async def init(self, args: Any) -> None:
        self.dir = pathlib.Path(args["dir"])
        self.db = SQLiteDatabase(self.dir / f"{self.ctx.name}.db", durability="off")
        await self.db.open()
        await self.db.write(_create)
        self.churn = asyncio.create_task(self._churn())

    async def _churn(self) -> None:
        # enough writers that the writer thread always has a batch to run
        async with asyncio.TaskGroup() as group:
            for k in range(8):
                group.create_task(self._write(k))

    async def _write(self, k: int) -> None:
        n = 0
        while True:
            await self.db.write(_insert, k * 1_000_000 + n)
            n += 1

    async def handle_call(self, request: Any) -> Any:
        if request["op"] == "lookups":
            path = str(self.dir / "tool.db")
            results = [
                await run_in_child(lookup, {"path": path}, float(request["timeout"]))
                for _ in range(int(request["n"]))
            ]
            return {"results": results}
        return None

    async def handle_cast(self, message: Any) -> None:
        if message["op"] == "wait_forever":  # until the agent is killed
            await run_in_child(wait_forever, {"pidfile": message["pidfile"]}, 3600.0)

    async def terminate(self, reason: str) -> None:
        self.churn.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.churn
        await self.db.close()
