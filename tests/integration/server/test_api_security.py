"""API security against a real node on a loopback port: the token on every non-public
path, the dashboard's login cookie (GET only), a token kept in the vault and rotated
without a restart, an unresolvable token (503 at request time, exit 2 at startup), and
the per-client rate limit."""

from __future__ import annotations

import asyncio

import pytest

from stalwart.guard import EnvProvider, LocalVault, SecretResolver
from stalwart.node import Node
from stalwart.observe import EventBus
from stalwart.runtime import ChildSpec, SupervisorSpec
from stalwart.server import ObservabilityService, ServerSettings
from stalwart.testing import ProbeAgent

from .conftest import FAST, TOKEN

ROOT = SupervisorSpec("root", [ChildSpec("a", ProbeAgent)])
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GUARDED = [
    "/", "/openapi.json", "/static/app.js", "/v1/agents", "/v1/agents/a", "/v1/summary",
    "/v1/alerts", "/v1/logs", "/v1/cluster", "/v1/events", "/v1/tasks", "/v1/approvals",
    "/v1/nothing",
]  # fmt: skip
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def cookie_of(response) -> str:
    raw = response.headers["set-cookie"]
    return raw.split(";", 1)[0].partition("=")[2]


@pytest.mark.timeout(60)
async def test_every_non_public_path_needs_the_token(start_node):
    n = await start_node(ROOT)
    for path in ("/livez", "/readyz", "/metrics"):
        assert (await n.anon.get(path)).status_code == 200, path
    for path in GUARDED:
        r = await n.anon.get(path)
        assert r.status_code == 401, (path, r.status_code)
        assert r.headers["www-authenticate"] == "Bearer", path
        if path != "/":
            assert "bearer token" in r.json()["error"], path
    page = await n.anon.get("/")  # a browser gets the login form
    assert page.headers["content-type"].startswith("text/html") and 'id="login"' in page.text
    wrong = await n.anon.get("/v1/agents", headers={"Authorization": "Bearer " + "x" * 26})
    assert wrong.status_code == 401 and wrong.json()["error"] == "wrong bearer token"
    basic = await n.anon.get("/v1/agents", headers={"Authorization": "Basic eDp5"})
    assert basic.status_code == 401 and "Bearer <api token>" in basic.json()["error"]
    for path in ("/v1/agents", "/openapi.json", "/static/app.js", "/"):
        assert (await n.client.get(path)).status_code == 200, path


@pytest.mark.timeout(60)
async def test_the_login_cookie_reads_but_never_mutates(start_node):
    n = await start_node(ROOT)
    wrong = await n.anon.post("/login", content="token=not-the-token", headers=FORM)
    assert (
        wrong.status_code == 401
        and "wrong token" in wrong.text
        and "set-cookie" not in wrong.headers
    )
    as_json = await n.anon.post("/login", json={"token": TOKEN})
    assert as_json.status_code == 400 and "form" in as_json.json()["error"]
    empty = await n.anon.post("/login", content="token=", headers=FORM)
    assert empty.status_code == 400 and "'token'" in empty.json()["error"]
    ok = await n.anon.post("/login", content=f"token={TOKEN}", headers=FORM)
    assert ok.status_code == 303 and ok.headers["location"] == "/"
    attributes = {a.strip() for a in ok.headers["set-cookie"].split(";")[1:]}
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= attributes
    session = cookie_of(ok)
    assert TOKEN not in ok.headers["set-cookie"]  # an HMAC of the token, not the token
    jar = {"Cookie": f"stalwart_session={session}"}
    for path in ("/", "/v1/summary", "/v1/agents", "/static/app.js"):
        assert (await n.anon.get(path, headers=jar)).status_code == 200, path
    csrf = await n.anon.post("/v1/agents/a/restart", headers=jar)
    assert csrf.status_code == 401 and "GET requests only" in csrf.json()["error"]
    forged = {"Cookie": "stalwart_session=" + "0" * 64}
    assert (await n.anon.get("/v1/summary", headers=forged)).status_code == 401


@pytest.mark.timeout(60)
async def test_a_token_in_the_vault_rotates_without_a_restart(start_node, tmp_path):
    vault = LocalVault(tmp_path / "vault.enc", key_file=str(tmp_path / "vault.key"))
    old, new = "api-token-old-0123456789", "api-token-new-9876543210"
    vault.set("api-token", old)
    n = await start_node(ROOT, api_token="secret://api-token", secrets=SecretResolver(vault))
    seen: list[str] = []

    async def get(path: str, token: str | None = None, **headers: str):
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        r = await n.anon.get(path, headers=headers)
        seen.append(f"{r.status_code} {r.headers} {r.text}")
        return r

    assert (await get("/v1/agents", old)).status_code == 200
    login = await n.anon.post("/login", content=f"token={old}", headers=FORM)
    seen.append(str(login.headers))
    session = {"Cookie": f"stalwart_session={cookie_of(login)}"}
    assert (await get("/v1/summary", **session)).status_code == 200
    async with n.anon.stream("GET", "/v1/events", headers=session) as stream:
        lines = stream.aiter_lines()
        async with asyncio.timeout(10):
            while "summary" not in await anext(lines):
                pass
        vault.rotate("api-token", new)
        assert (await get("/v1/agents", old)).status_code == 401  # at once: no TTL wait
        assert (await get("/v1/agents", new)).status_code == 200
        async with asyncio.timeout(10):  # the open stream ends too, within a second or so
            while await anext(lines) != "event: logout":
                pass
    ended = await get("/v1/summary", **session)
    assert ended.status_code == 401 and "log in again" in ended.json()["error"]
    assert "log in again" in (await get("/", **session)).text
    everything = "\n".join(seen)
    assert old not in everything and new not in everything


@pytest.mark.timeout(60)
async def test_an_unresolvable_token_is_503_naming_the_secret(start_node):
    env = {"STALWART_SECRET_API_TOKEN": "env-token-0123456789abc"}
    resolver = SecretResolver(EnvProvider(env), ttl=0)
    n = await start_node(ROOT, api_token="secret://api-token", secrets=resolver)
    bearer = {"Authorization": "Bearer env-token-0123456789abc"}
    assert (await n.anon.get("/v1/agents", headers=bearer)).status_code == 200
    del env["STALWART_SECRET_API_TOKEN"]  # the secret is gone (a provider outage)
    r = await n.anon.get("/v1/agents", headers=bearer)
    assert r.status_code == 503, r.text
    assert "'secret://api-token' cannot be resolved" in r.json()["error"]
    assert "stalwart secrets set api-token" in r.json()["error"]
    assert "env-token" not in r.text
    assert (await n.anon.get("/livez")).status_code == 200  # probes need no token
    env["STALWART_SECRET_API_TOKEN"] = "env-token-0123456789abc"
    assert (await n.anon.get("/v1/agents", headers=bearer)).status_code == 200


@pytest.mark.timeout(60)
async def test_a_missing_token_secret_stops_the_node_at_startup(tmp_path):
    vault = LocalVault(tmp_path / "vault.enc", key_file=str(tmp_path / "vault.key"))
    vault.set("something-else", "x" * 20)
    service = ObservabilityService(
        ServerSettings(port=0, api_token="secret://api-token", log_db=None),
        secrets=SecretResolver(vault),
    )
    bus = EventBus(log=False)
    node = Node(ROOT, FAST, events=bus, services=[service])
    async with asyncio.timeout(30):
        assert await node.run() == 2
    (failed,) = [e for e in bus.recent() if e.name == "node_start_failed"]
    assert "secret://api-token" in failed.fields["error"]
    assert "stalwart secrets set api-token" in failed.fields["error"]


@pytest.mark.timeout(60)
async def test_a_client_over_its_rate_limit_gets_429_and_probes_never_do(start_node):
    n = await start_node(ROOT, rate_limit_per_s=0.01, rate_limit_burst=3)
    assert [(await n.client.get("/v1/agents")).status_code for _ in range(3)] == [200] * 3
    over = await n.client.get("/v1/agents")
    assert over.status_code == 429
    assert int(over.headers["retry-after"]) >= 1
    assert "too many requests" in over.json()["error"]
    assert (await n.anon.post("/login", content="token=x", headers=FORM)).status_code == 429
    for _ in range(10):
        assert (await n.client.get("/livez")).status_code == 200
        assert (await n.client.get("/readyz")).status_code == 200
