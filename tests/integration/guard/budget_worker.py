"""One process of the cross-process budget race: 16 tasks spending until refused."""

from __future__ import annotations

import asyncio

from stalwart.errors import BudgetExceeded
from stalwart.guard import Budget, SpendLedger


def spend(url: str, worker: int, tasks: int = 16) -> float:
    """Spend from the shared day limit until refused; returns what this process settled."""

    async def run() -> float:
        ledger = SpendLedger(url)
        budget = Budget(day_usd=1.0, wait_s=2.0)
        spent = 0.0

        async def task(i: int) -> None:
            nonlocal spent
            while True:
                try:
                    r = await ledger.reserve(
                        budget, agent=f"a{worker}", task_id=f"w{worker}t{i}", amount_usd=0.03
                    )
                except BudgetExceeded:
                    return
                await asyncio.sleep(0)
                await ledger.settle(r, 0.025)
                spent += 0.025

        await asyncio.gather(*(task(i) for i in range(tasks)))
        ledger.close()
        return spent

    return asyncio.run(run())
