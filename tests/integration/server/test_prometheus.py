"""A real Prometheus (the Debian package) scrapes a node's /metrics; its API has the series."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import httpx
import pytest
import yaml
from tests._loopback import free_port

from stalwart.observe import default_rules, prometheus_rules
from stalwart.runtime import ChildSpec, SupervisorSpec
from stalwart.testing import ProbeAgent

pytestmark = pytest.mark.skipif(
    not shutil.which("prometheus"), reason="needs /usr/bin/prometheus (Debian prometheus)"
)


async def query(client: httpx.AsyncClient, expr: str) -> list[dict]:
    r = await client.get("/api/v1/query", params={"query": expr})
    r.raise_for_status()
    return r.json()["data"]["result"]


async def test_prometheus_scrapes_the_node(start_node, tmp_path):
    root = SupervisorSpec("root", [ChildSpec("a", ProbeAgent), ChildSpec("b", ProbeAgent)])
    n = await start_node(root)
    target = n.url.removeprefix("http://")
    rules = tmp_path / "stalwart-rules.yml"
    rules.write_text(prometheus_rules(default_rules()))  # what `stalwart alerts export` writes
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files: ['{rules}']\n"
        "scrape_configs:\n  - job_name: stalwart\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            "prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            found: dict[str, list[dict]] = {}
            wanted = [
                "stalwart_agents_running",
                "stalwart_agent_resident_memory_bytes",
                "stalwart_agent_cpu_seconds_total",
                "stalwart_agent_open_fds",
                "stalwart_ready",
                'up{job="stalwart"}',
            ]
            async with asyncio.timeout(40):
                while len(found) < len(wanted):
                    assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
                    for expr in wanted:
                        try:
                            result = await query(c, expr)
                        except httpx.HTTPError:
                            result = []  # not listening yet
                        if result:
                            found[expr] = result
                    if len(found) < len(wanted):
                        await asyncio.sleep(0.5)  # the next scrape is due within 1 s
            # Prometheus loaded the exported rules and evaluates them without error
            exported = yaml.safe_load(rules.read_text())
            expected = sum(len(g["rules"]) for g in exported["groups"])
            async with asyncio.timeout(15):
                while True:
                    groups = (await c.get("/api/v1/rules")).json()["data"]["groups"]
                    loaded = [r for g in groups for r in g["rules"]]
                    if len(loaded) == expected and all(r.get("lastEvaluation", "").startswith("2")
                                                 and not r["lastEvaluation"].startswith("0001")
                                                 for r in loaded):  # fmt: skip
                        break
                    await asyncio.sleep(0.5)  # the next rule evaluation is due within 1 s
            assert all(r["health"] == "ok" for r in loaded), [r.get("lastError") for r in loaded]
            assert {r["name"] for r in loaded} == {r.name for r in default_rules()}
        assert found['up{job="stalwart"}'][0]["value"][1] == "1"
        agents = {r["metric"]["agent"] for r in found["stalwart_agent_resident_memory_bytes"]}
        assert agents == {"a", "b"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
