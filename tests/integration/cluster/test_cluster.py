"""Scale-out: three node processes on one PostgreSQL, running the helpdesk workload."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import statistics
import time

import httpx
import pytest
from examples.helpdesk.app import app as helpdesk
from examples.helpdesk.tickets import generate

from stalwart.durable import open_store
from stalwart.durable._renewal import LEASE_STRETCH
from stalwart.node import Tasks
from stalwart.testing import eventually

from .conftest import start_node

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]

LEASE = helpdesk.lease_seconds  # the default


async def delivery_report(sim_url: str) -> dict:
    async with httpx.AsyncClient(timeout=10) as http:
        return (await http.get(f"{sim_url}/tools/_report")).json()


async def test_all_nodes_register_and_share_the_work(cluster, pg_url, sim_url):
    store = await open_store(pg_url)
    try:
        nodes = await store.list_nodes()
        assert {n.id for n in nodes} == {c.node_id for c in cluster}
        assert all(n.info["agents"] == ["triage", "resolver"] for n in nodes)
        tasks = Tasks(None, store)
        tickets = generate(60, seed=5, injection_rate=0.0)
        ids = [await tasks.submit("triage", t, task_id=t["id"]) for t in tickets]
        records = [await tasks.wait(i, timeout=120) for i in ids]
        assert all(r.status == "succeeded" for r in records)

        # every node's agents claimed a share of the work
        def claims() -> dict[str, int]:
            return {
                c.node_id: sum(1 for e in c.lines if e.get("event") == "task_claimed")
                for c in cluster
            }

        # every ticket (and each hand-over) claimed once, its log line read
        await eventually(lambda: sum(claims().values()) >= 60)
        claims_seen = claims()
        assert all(n > 0 for n in claims_seen.values()), claims_seen
        report = await delivery_report(sim_url)
        assert report["duplicates"] == {"email": 0, "payments": 0}
    finally:
        await store.close()


async def test_sigkill_of_a_whole_node_moves_its_tasks_to_the_others(cluster, pg_url, sim_url):
    store = await open_store(pg_url)
    try:
        tasks = Tasks(None, store)
        tickets = generate(90, seed=21, injection_rate=0.0)
        ids = [await tasks.submit("triage", t, task_id=t["id"]) for t in tickets]
        victim = cluster[0]
        prefix = victim.node_id + "/"

        async def held_by_victim() -> dict[str, tuple[int, float]]:
            running = await store.list_tasks(status="running", limit=10_000)
            return {
                t.id: (t.lease_token, t.lease_expires or 0.0)
                for t in running
                if (t.lease_owner or "").startswith(prefix)
            }

        async with asyncio.timeout(60):
            while not (orphaned := await held_by_victim()):
                await asyncio.sleep(0.01)
        killed_at = time.time()  # the leases' clock (every process here shares it)
        victim.signal_group(signal.SIGKILL)  # the node, its fork server and its agents
        # When each orphaned lease really ends: a renewal may have landed between the
        # listing and the kill, and nothing renews after it. A busy node's renewals ask
        # for up to LEASE_STRETCH leases at once (durable/_renewal.py), so a fixed bound
        # from the kill held on an idle machine and failed on a loaded one (5.6 s > 5).
        for task_id, (token, _) in list(orphaned.items()):
            record = await store.get_task(task_id)
            assert record is not None
            if record.lease_token == token and record.lease_expires is not None:
                orphaned[task_id] = (token, record.lease_expires)
        takeover: dict[str, float] = {}
        async with asyncio.timeout(60):
            while len(takeover) < len(orphaned):
                for task_id, (token, _) in orphaned.items():
                    if task_id in takeover:
                        continue
                    record = await store.get_task(task_id)
                    assert record is not None
                    if record.lease_token > token or record.finished:
                        takeover[task_id] = time.time()
                await asyncio.sleep(0.02)
        records = [await tasks.wait(i, timeout=120) for i in ids]
        assert all(r.status == "succeeded" for r in records), [
            (r.id, r.outcome) for r in records if r.status != "succeeded"
        ]
        report = await delivery_report(sim_url)
        assert report["duplicates"] == {"email": 0, "payments": 0}
        left = sorted(expires - killed_at for _, expires in orphaned.values())
        late = sorted(takeover[i] - orphaned[i][1] for i in orphaned)
        failover = sorted(t - killed_at for t in takeover.values())
        print(
            f"failover of {len(failover)} orphaned tasks: p50 {statistics.median(failover):.2f} s,"
            f" max {failover[-1]:.2f} s; lease left at the kill: max {left[-1]:.2f} s; "
            f"taken after the lease ended: p50 {statistics.median(late):.2f} s, "
            f"max {late[-1]:.2f} s"
        )
        assert left[-1] <= LEASE * LEASE_STRETCH + 0.5  # no lease longer than a node may ask
        # taken over by a claim soon after the lease ended: a survivor's claim scan
        # (0.25 s when idle) plus a claim's transaction, with room for a loaded machine
        assert late[-1] < 5.0, late
    finally:
        await store.close()


async def test_rolling_restart_under_load_loses_and_duplicates_nothing(cluster, pg_url, sim_url):
    store = await open_store(pg_url)
    try:
        tasks = Tasks(None, store)
        tickets = generate(90, seed=33, injection_rate=0.0)
        ids = [await tasks.submit("triage", t, task_id=t["id"]) for t in tickets]
        for i, node in enumerate(list(cluster)):  # one by one: stop gracefully, start anew
            await asyncio.sleep(0.3)
            assert await node.stop() == 0
            cluster[i] = await start_node(f"node{i}-new", pg_url, sim_url)
        records = [await tasks.wait(i, timeout=120) for i in ids]
        assert all(r.status == "succeeded" for r in records)
        answers = {r.id: r.outcome["answer"] for r in records}
        report = await delivery_report(sim_url)
        assert report["duplicates"] == {"email": 0, "payments": 0}
    finally:
        await store.close()
    # the same tickets on one clean node give the same answers
    from tests.integration.agent.test_app import run_helpdesk

    clean, _ = await run_helpdesk(pytest_tmp_dir(), tickets, kills=0)
    assert answers == clean


def pytest_tmp_dir():
    import pathlib
    import tempfile

    return pathlib.Path(tempfile.mkdtemp(prefix="stalwart-clean-"))


@pytest.mark.slow
async def test_a_paused_node_writes_nothing_after_its_tasks_were_taken_over(
    cluster, pg_url, sim_url
):
    store = await open_store(pg_url)
    try:
        tasks = Tasks(None, store)
        tickets = generate(90, seed=44, injection_rate=0.0)
        ids = [await tasks.submit("triage", t, task_id=t["id"]) for t in tickets]
        victim = cluster[1]
        prefix = victim.node_id + "/"
        async with asyncio.timeout(60):
            while not [
                t
                for t in await store.list_tasks(status="running", limit=10_000)
                if (t.lease_owner or "").startswith(prefix)
            ]:
                await asyncio.sleep(0.01)
        victim.signal_group(signal.SIGSTOP)  # node and agents frozen, mid-task, leases held
        try:
            # The others take its tasks over once their leases expire. Woken before that
            # (on a busy machine their claims can come late), its renewal would rightly go
            # through and nothing would be refused: wait for the takeover itself.
            held = [
                t.id
                for t in await store.list_tasks(status="running", limit=10_000)
                if (t.lease_owner or "").startswith(prefix)
            ]
            assert held

            async def taken_over() -> bool:
                for task_id in held:
                    t = await store.get_task(task_id)
                    assert t is not None
                    if not (t.finished or not (t.lease_owner or "").startswith(prefix)):
                        return False
                return True

            async with asyncio.timeout(LEASE * 20):
                while not await taken_over():
                    await asyncio.sleep(0.1)
        finally:
            victim.signal_group(signal.SIGCONT)  # it wakes up believing it still owns them
        records = [await tasks.wait(i, timeout=120) for i in ids]
        assert all(r.status == "succeeded" for r in records)
        report = await delivery_report(sim_url)
        assert report["duplicates"] == {"email": 0, "payments": 0}
        answers = {r.id: r.outcome["answer"] for r in records}
        refusals = (
            "durable.lease_lost",
            "durable_lease_lost",
            "task_lease_lost",
            "task_store_failed",  # its open transaction was ended by the server
            "durable.lease_abandoned",
        )
        with contextlib.suppress(TimeoutError):  # the assertion below says what was seen
            await eventually(lambda: victim.events(*refusals), timeout=60)
        seen = sorted({str(e.get("event")) for e in victim.lines})
        assert victim.events(*refusals), (
            f"the woken node's stale leases were refused; events seen: {seen}"
        )
        assert victim.proc.returncode is None  # and it rejoined instead of dying
    finally:
        await store.close()
    from tests.integration.agent.test_app import run_helpdesk

    clean, _ = await run_helpdesk(pytest_tmp_dir(), tickets, kills=0)
    assert answers == clean  # no stale write changed any result


async def test_a_partitioned_node_stops_before_its_leases_expire_and_rejoins(
    cluster, pg_url, sim_url
):
    from .proxy import BlackHoleProxy

    proxy = await BlackHoleProxy("127.0.0.1", 5432).start()
    cut_off_url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    victim = await start_node("cut-off", cut_off_url, sim_url)
    store = await open_store(pg_url)
    try:
        tasks = Tasks(None, store)
        tickets = generate(120, seed=55, injection_rate=0.0)
        ids = [await tasks.submit("triage", t, task_id=t["id"]) for t in tickets]
        prefix = victim.node_id + "/"

        async def held_by_victim() -> list[str]:
            running = await store.list_tasks(status="running", limit=10_000)
            return [t.id for t in running if (t.lease_owner or "").startswith(prefix)]

        # Cut while the victim holds a lease. A task seen running may finish before the
        # cut lands, so the store is asked again after it (nothing the victim writes can
        # arrive while cut); if the victim then holds nothing, heal and try again.
        async with asyncio.timeout(90):
            while True:
                while not await held_by_victim():
                    await asyncio.sleep(0.01)
                proxy.cut()  # the node and its agents keep running; their store goes silent
                if await held_by_victim():
                    break
                proxy.heal()
        try:
            await asyncio.sleep(LEASE * 3)  # three leases: the others take its tasks over
        finally:
            proxy.heal()
        records = [await tasks.wait(i, timeout=120) for i in ids]
        failed = [(r.id, r.attempts, r.outcome) for r in records if r.status != "succeeded"]
        assert not failed, failed
        report = await delivery_report(sim_url)
        assert report["duplicates"] == {"email": 0, "payments": 0}
        answers = {r.id: r.outcome["answer"] for r in records}
        gave_up = (
            "durable.lease_abandoned",
            "durable_lease_abandoned",
            "task_lease_lost",
            "task_store_failed",  # a commit held by the cut was fenced out after it healed
        )
        with contextlib.suppress(TimeoutError):  # the assertion below fails it
            await eventually(lambda: victim.events(*gave_up), timeout=10)
        seen = sorted({str(e.get("event")) for e in victim.lines})
        assert victim.events(*gave_up), f"the cut-off runners stopped their work; saw {seen}"
        assert victim.proc.returncode is None  # it rejoined after the cut healed

        # it claims work again once healed. The other nodes compete for the same tasks
        # (each polls every scan_interval, and claims many at once), so one batch may all
        # go to them on a loaded machine: submit batches until the victim takes one
        # (bounded), then check that every task submitted after the heal succeeded.
        def claimed_after() -> list[object]:
            return [
                e
                for e in victim.lines
                if e.get("event") == "task_claimed"
                and str(e.get("task_id", "")).startswith("after-")
            ]

        more: list[str] = []
        async with asyncio.timeout(120):
            for batch in range(20):
                more += [
                    await tasks.submit("triage", t, task_id=f"after-{batch}-{t['id']}")
                    for t in generate(10, seed=56 + batch, injection_rate=0.0)
                ]
                with contextlib.suppress(TimeoutError):
                    await eventually(claimed_after, timeout=3)
                if claimed_after():
                    break
        assert claimed_after(), "the healed node claims work again"
        after = [await tasks.wait(i, timeout=60) for i in more]
        assert all(r.status == "succeeded" for r in after)
    finally:
        await store.close()
        await victim.stop()
        await proxy.close()
    from tests.integration.agent.test_app import run_helpdesk

    clean, _ = await run_helpdesk(pytest_tmp_dir(), tickets, kills=0)
    assert answers == clean


@pytest.mark.timeout(120)
async def test_the_cluster_view_lists_every_node_and_its_liveness(pg_url, tmp_path):
    from stalwart.node import app_node
    from stalwart.observe import EventBus
    from stalwart.server import ObservabilityService, ServerSettings

    other = await open_store(pg_url)
    await other.register_node("elsewhere", {"host": "machine-2", "agents": ["triage"]})
    http = ObservabilityService(ServerSettings(port=0, log_db=None))
    node, _ = app_node(
        "examples.helpdesk.app:app", store=pg_url, events=EventBus(log=False), services=(http,)
    )

    async def look() -> None:
        async with asyncio.timeout(30):
            while not node.ready:
                await asyncio.sleep(0.01)
        async with httpx.AsyncClient(timeout=5) as client:
            body = (await client.get(f"{http.url}/v1/cluster")).json()
        nodes = {n["id"]: n for n in body["nodes"]}
        assert set(nodes) == {node.id, "elsewhere"}
        assert nodes[node.id]["self"] and nodes[node.id]["alive"]
        assert nodes[node.id]["info"]["agents"] == ["triage", "resolver"]
        assert not nodes["elsewhere"]["self"]
        assert {a["name"] for a in body["agents"]} == {"triage", "resolver"}

    try:
        assert await node.run(until=look()) == 0
        assert [n.id for n in await other.list_nodes()] == ["elsewhere"]  # it unregistered
    finally:
        await other.close()


async def test_sigterm_drains_a_node_and_hands_its_tasks_back(cluster, pg_url, sim_url):
    store = await open_store(pg_url)
    try:
        tasks = Tasks(None, store)
        ids = [
            await tasks.submit("triage", t, task_id=t["id"])
            for t in generate(120, seed=66, injection_rate=0.0)
        ]
        leaving = cluster[2]
        prefix = leaving.node_id + "/"
        async with asyncio.timeout(60):
            while not [
                t
                for t in await store.list_tasks(status="running", limit=10_000)
                if (t.lease_owner or "").startswith(prefix)
            ]:
                await asyncio.sleep(0.01)
        started = time.monotonic()
        assert await leaving.stop() == 0  # SIGTERM: stop claiming, hand back, exit
        drained_in = time.monotonic() - started
        still_held = [
            t.id
            for t in await store.list_tasks(status="running", limit=10_000)
            if (t.lease_owner or "").startswith(prefix)
        ]
        assert still_held == []  # handed back, not left to expire
        assert drained_in < 30  # inside the Kubernetes grace period
        records = [await tasks.wait(i, timeout=120) for i in ids]
        assert all(r.status == "succeeded" for r in records)
        report = await delivery_report(sim_url)
        assert report["duplicates"] == {"email": 0, "payments": 0}
    finally:
        await store.close()
