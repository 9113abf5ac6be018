"""Acceptance 1: rotate the model API key twice under load; no task fails.

The helpdesk runs on a real node against the sim, which checks the key. The
key lives in the encrypted vault; each rotation changes vault and sim
together (the sim stops accepting the old key at once). Agents see the vault
file change and use the new key from their next request; a request already
on its way with the old one gets a 401, re-reads the vault and retries.
"""

from __future__ import annotations

import asyncio

from examples.helpdesk.tickets import generate

from stalwart import RuntimeSettings
from stalwart.guard import LocalVault
from stalwart.node import app_node
from stalwart.observe import EventBus

KEYS = ["sk-sim-first-key-aaaaaa", "sk-sim-second-key-bbbbbb", "sk-sim-third-key-cccccc"]
MODELS = ("strong", "weak")


def seen(world, key: str) -> int:
    return sum(world.keys_seen.get(f"{m}:{key[-6:]}", 0) for m in MODELS)


async def test_two_rotations_under_load_fail_no_task(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("STALWART_SIM_URL", raising=False)
    monkeypatch.setenv("STALWART_SECRETS", "vault")
    monkeypatch.setenv("STALWART_VAULT", str(tmp_path / "vault.enc"))
    monkeypatch.setenv("STALWART_VAULT_KEY_FILE", str(tmp_path / "vault.key"))
    vault = LocalVault(tmp_path / "vault.enc", key_file=str(tmp_path / "vault.key"))
    vault.set("sim-api-key", KEYS[0])
    node, service = app_node(
        "tests.integration.guard.rotation_app:app",
        store=f"sqlite:///{tmp_path}/hd.db",
        events=EventBus(log=False),
        settings=RuntimeSettings(heartbeat_interval=0.5),
    )
    facts: dict[str, object] = {}

    async def work() -> None:
        async with asyncio.timeout(30):
            while not node.ready:
                await asyncio.sleep(0.01)
        assert service.sim is not None and service.tasks is not None
        world = service.sim.world
        for m in MODELS:
            world.set_keys(m, [KEYS[0]])
        tickets = generate(150, seed=17, injection_rate=0.0)
        # The last 40 tickets go in only after both rotations settled, so
        # they are work that can only have used the newest key.
        ids = [await service.tasks.submit("triage", t, task_id=t["id"]) for t in tickets[:110]]
        done: list[str] = []

        async def rotate_when(count: int, old: str, new: str) -> None:
            while len(done) < count:
                await asyncio.sleep(0.01)
            vault.rotate("sim-api-key", new)
            for m in MODELS:
                world.set_keys(m, [new])  # the old key is revoked at once

        rotations = asyncio.gather(
            rotate_when(30, KEYS[0], KEYS[1]), rotate_when(70, KEYS[1], KEYS[2])
        )
        failed = []
        snapshot: dict[str, int] = {}

        async def wait_all(task_ids: list[str]) -> None:
            for task_id in task_ids:
                record = await service.tasks.wait(task_id, timeout=120)
                if record.status != "succeeded" or record.outcome.get("status") != "completed":
                    failed.append((task_id, record.status, record.outcome))
                done.append(task_id)

        await wait_all(ids)
        await rotations
        snapshot = {k: seen(world, k) for k in KEYS}
        late = [await service.tasks.submit("triage", t, task_id=t["id"]) for t in tickets[110:]]
        await wait_all(late)
        facts.update(
            failed=failed,
            snapshot=snapshot,
            final={k: seen(world, k) for k in KEYS},
            unauthorized=sum(world.stats.get(f"{m}:unauthorized", 0) for m in MODELS),
        )

    assert await node.run(until=work()) == 0
    assert facts["failed"] == []
    final, snapshot = facts["final"], facts["snapshot"]
    assert all(final[k] > 0 for k in KEYS)  # every key served requests in its time
    # after the rotations settled, the old keys were never presented again
    assert final[KEYS[0]] == snapshot[KEYS[0]] and final[KEYS[1]] == snapshot[KEYS[1]]
    assert final[KEYS[2]] > snapshot[KEYS[2]]
    # any request still made with a revoked key got a 401, re-read the vault and succeeded
    assert facts["unauthorized"] <= 2 * 16  # at most one per in-flight request per rotation
