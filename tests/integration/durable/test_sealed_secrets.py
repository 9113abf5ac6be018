"""A resolved secret returned by a step is journaled as its reference (issue 16): the store
never holds the value, and a replay gets the secret's current value back."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from stalwart.durable import Context, Runner, Store
from stalwart.guard import ApprovalQueue, LocalVault, SecretResolver
from stalwart.testing import FakeClock

MakeStore = Callable[..., Any]
VALUE = "s3cr3t-Zp8Qw2Lx7Rk4Vn"
ROTATED = "r0tated-Hy6Tb3Mc9Jd1Fs"


class Crash(BaseException):
    """Stands in for a process death."""


async def test_secrets_are_sealed_in_the_journal_and_unsealed_on_replay(
    make_store: MakeStore, clock: FakeClock, tmp_path
) -> None:
    vault = LocalVault(tmp_path / "v.enc", key_file=str(tmp_path / "v.key"))
    vault.set("db-password", VALUE)
    resolver = SecretResolver(vault, ttl=0, clock=clock)
    seen: list[Any] = []

    def workflow(crash: bool) -> Any:
        async def run(ctx: Context, inp: Any) -> Any:
            key = resolver.resolve("secret://db-password")
            header = await ctx.step("header", lambda: {"h": f"Bearer {key}", "n": 3})
            forged = await ctx.step("forged", lambda: "\ue000secret://db-password\ue001")
            sent = await ctx.effect("send", lambda *, idempotency_key: key, deduplicated=True)
            seen.append((header, forged, sent))
            if crash:
                raise Crash
            return {"used": header["h"]}

        return run

    store: Store = await make_store()
    runner = Runner(store, owner="a", clock=clock)
    tid = await runner.submit("sealing", {})
    with pytest.raises(Crash):
        await runner.run(tid, workflow(crash=True))
    assert seen[0] == ({"h": f"Bearer {VALUE}", "n": 3}, "\ue000secret://db-password\ue001", VALUE)
    stored = json.dumps([e.value for e in (await store.load_journal(tid)).entries])
    assert VALUE not in stored
    assert stored.count("secret://db-password") == 3  # two references and the forged text
    vault.rotate("db-password", ROTATED)  # replay hands out the current value
    clock.advance(100)  # the first lease expires
    result = await Runner(store, owner="b", clock=clock).run(tid, workflow(crash=False))
    header, forged, sent = seen[1]
    assert header == {"h": f"Bearer {ROTATED}", "n": 3} and sent == ROTATED
    assert forged == "\ufffdsecret://db-password\ufffd"  # data cannot forge a reference
    assert result.status == "succeeded"
    record = await store.get_task(tid)
    assert record is not None and ROTATED not in json.dumps(record.outcome)
    assert record.outcome == {"used": "Bearer \ue000secret://db-password\ue001"}


def test_a_held_tool_call_keeps_the_reference_not_the_secret(tmp_path) -> None:
    vault = LocalVault(tmp_path / "v.enc", key_file=str(tmp_path / "v.key"))
    vault.set("api-token", VALUE)
    key = SecretResolver(vault).resolve("secret://api-token")
    queue = ApprovalQueue(f"sqlite:///{tmp_path}/approvals.db")
    try:
        held = queue.submit(
            task_id="t", agent="a", tool="post", arguments={"auth": f"Token {key}"}, reason="r"
        )
        assert held.as_dict(reveal=True)["arguments"] == {
            "auth": "Token \ue000secret://api-token\ue001"
        }
    finally:
        queue.close()
    assert VALUE.encode() not in b"".join(p.read_bytes() for p in tmp_path.glob("approvals.db*"))
