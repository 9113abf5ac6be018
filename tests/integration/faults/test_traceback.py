"""A failing task carries its traceback, redacted, in its record, the API and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

from stalwart.durable import Runner, SQLiteStore
from stalwart.guard import default_redactor
from stalwart.server._tasks_api import task_view


def _charge_customer(email: str) -> None:
    raise ValueError(f"card declined for {email}")


async def test_a_failed_task_keeps_where_it_failed_without_the_pii(tmp_path):
    store = SQLiteStore(str(tmp_path / "tb.db"))
    await store.open()
    try:
        runner = Runner(store, lease_seconds=5, redact=default_redactor().redact)

        async def workflow(ctx, task_input):
            _charge_customer(task_input["email"])

        tid = await runner.submit("billing", {"email": "jane.doe@example.com"})
        result = await runner.run(tid, workflow)
        assert result.status == "failed"
        record = await store.get_task(tid)
        assert record is not None
        trace = record.outcome["traceback"]
        assert "Traceback (most recent call last)" in trace
        assert "_charge_customer" in trace and "ValueError: card declined for" in trace
        assert "jane.doe@example.com" not in trace  # redacted
        assert (await task_view(record))["outcome"]["traceback"] == trace
    finally:
        await store.close()
    shown = subprocess.run(
        [sys.executable, "-m", "stalwart.cli", "task", "status", tid, "--store",
         f"sqlite:///{tmp_path}/tb.db"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 4, shown.stderr  # the task asked about failed
    assert "_charge_customer" in json.loads(shown.stdout)["outcome"]["traceback"]
