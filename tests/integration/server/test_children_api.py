"""Child control over HTTP and the CLI, against a real node on loopback."""

from __future__ import annotations

import asyncio

from stalwart.cli._main import main
from stalwart.runtime import ChildSpec, DynamicSupervisorSpec, SupervisorSpec
from stalwart.testing import ProbeAgent

from .conftest import TOKEN

SESSIONS = DynamicSupervisorSpec("sessions", ChildSpec("session", ProbeAgent), max_children=4)
ROOT = SupervisorSpec(
    "root",
    [ChildSpec("a", ProbeAgent), ChildSpec("b", ProbeAgent, restart="transient"), SESSIONS],
)


async def test_list_terminate_restart_delete_over_http(start_node):
    n = await start_node(ROOT)
    await n.node.runtime.dynamic_supervisor("sessions").start_instance("s1")
    body = (await n.client.get("/v1/supervisors")).json()
    by_id = {s["id"]: s for s in body["supervisors"]}
    assert by_id["root"]["counts"] == {"specs": 3, "active": 3, "supervisors": 1, "workers": 2}
    assert by_id["sessions"]["dynamic"] is True
    assert [c["id"] for c in by_id["sessions"]["children"]] == ["session:s1"]

    base = "/v1/supervisors/root/children"
    assert (await n.anon.post(f"{base}/b/terminate")).status_code == 401  # token needed
    running = await n.client.post(f"{base}/b/restart")
    assert running.status_code == 409 and running.json()["reason"] == "running"
    assert (await n.client.post(f"{base}/b/terminate")).json()["status"] == "terminated"
    assert n.node.runtime.whereis("b") is None
    rows = {r["id"]: r for r in (await n.client.get(base)).json()["children"]}
    assert rows["b"]["status"] == "undefined" and rows["b"]["pid"] is None
    restarted = (await n.client.post(f"{base}/b/restart")).json()
    assert restarted["pid"] == n.node.runtime.whereis("b").pid
    assert (await n.client.post(f"{base}/b/terminate")).status_code == 200
    assert (await n.client.delete(f"{base}/b")).json()["status"] == "deleted"
    gone = await n.client.delete(f"{base}/b")
    assert gone.status_code == 404 and gone.json()["reason"] == "not_found"
    assert (await n.client.get("/v1/supervisors/nobody/children")).status_code == 404

    inst = "/v1/supervisors/sessions/children/session:s1/terminate"
    assert (await n.client.post(inst)).status_code == 200
    assert n.node.runtime.whereis("session:s1") is None


async def test_the_cli_lists_and_terminates_children(start_node, capsys):
    n = await start_node(ROOT)
    where = ["children", "--url", n.url, "--token", TOKEN]
    assert await asyncio.to_thread(main, [*where, "list"]) == 0
    out = capsys.readouterr().out
    assert "root (one_for_all" not in out and "root (one_for_one, 5 in 60 s, running)" in out
    assert "sessions (dynamic one_for_one" in out
    sessions = out[out.index("sessions (dynamic") :].splitlines()
    assert sessions[1] == "  (none)", out  # no instance started: an empty list says so
    assert await asyncio.to_thread(main, [*where, "terminate", "root", "a"]) == 0
    assert n.node.runtime.whereis("a") is None
    assert await asyncio.to_thread(main, [*where, "delete", "root", "a"]) == 0
    refused = await asyncio.to_thread(main, [*where, "delete", "root", "a"])
    assert refused == 1 and "no child 'a'" in capsys.readouterr().err
    unreachable = ["children", "--url", "http://127.0.0.1:9", "list"]
    assert await asyncio.to_thread(main, unreachable) == 2
