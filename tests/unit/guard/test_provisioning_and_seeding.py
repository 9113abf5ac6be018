"""LocalVault.ensure (provisioning the sim's key), SpendLedger.add_spent (seeding a counter),
and the node's sim-key provisioning."""

from __future__ import annotations

import dataclasses

import pytest

from stalwart.agent import App, LLMAgent
from stalwart.errors import ConfigError, StartError
from stalwart.guard import Budget, LocalVault, SpendLedger
from stalwart.llm import Provider
from stalwart.node._simkey import provision_sim_key
from stalwart.observe import EventBus


def test_ensure_stores_once_and_never_overwrites(tmp_path) -> None:
    vault = LocalVault(tmp_path / "v.enc")
    assert vault.ensure("sim-api-key", "sk-first-value-1") is True
    assert vault.ensure("sim-api-key", "sk-other-value-2") is False
    assert vault.get("sim-api-key") == "sk-first-value-1" and vault.version("sim-api-key") == 1
    with pytest.raises(ConfigError, match="non-empty"):
        vault.ensure("other", "")


def test_add_spent_seeds_and_takes_back_without_going_below_zero(tmp_path) -> None:
    ledger = SpendLedger(f"sqlite:///{tmp_path}/l.db")
    assert ledger.add_spent("agent", "resolver", 9.5) == 9.5
    assert ledger.spent("agent", "resolver") == 9.5
    budget = Budget(agent_usd=10.0, wait_s=0)
    held = ledger.reserve_sync(budget, agent="resolver", task_id="t", amount_usd=0.4)
    assert held is not None
    ledger.settle_sync(held, 0.1)
    assert ledger.add_spent("agent", "resolver", -9.5) == pytest.approx(0.1)
    assert ledger.add_spent("agent", "resolver", -5.0) == 0.0  # never below zero
    assert ledger.add_spent("task", "t1", 0.2) == ledger.spent("task", "t1") == 0.2
    with pytest.raises(ConfigError, match="scope"):
        ledger.add_spent("week", "*", 1.0)
    ledger.close()


def _app(key: str | None, sim: bool = True) -> App:
    agent = LLMAgent(name="a", model="main")
    providers = {"sim": Provider("http://set-by-the-node", api_key=key)} if key else {}
    return App(agents=[agent], models={"main": ["sim:strong"]}, providers=providers, sim=sim)


def test_the_node_creates_the_sims_key_in_the_local_vault_once(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STALWART_SECRETS", "vault")
    monkeypatch.setenv("STALWART_VAULT", str(tmp_path / "v.enc"))
    monkeypatch.setenv("STALWART_VAULT_KEY_FILE", str(tmp_path / "v.key"))
    bus = EventBus(log=False)
    assert provision_sim_key(_app("secret://sim-api-key"), bus) is True
    value = LocalVault(tmp_path / "v.enc", key_file=str(tmp_path / "v.key")).get("sim-api-key")
    assert value.startswith("sk-sim-")
    assert provision_sim_key(_app("secret://sim-api-key"), bus) is False  # kept as it is
    (event,) = bus.recent("sim_key_provisioned")
    assert event["secret"] == "sim-api-key" and value not in str(event)
    # no reference, or no sim: nothing to do, nothing written
    assert provision_sim_key(_app(None), bus) is False
    assert provision_sim_key(_app("secret://other", sim=False), bus) is False
    assert LocalVault(tmp_path / "v.enc", key_file=str(tmp_path / "v.key")).names() == [
        "sim-api-key"
    ]


def test_a_provider_that_is_not_the_vault_is_never_written(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STALWART_SECRETS", "env")
    monkeypatch.delenv("STALWART_SECRET_SIM_API_KEY", raising=False)
    app = _app("secret://sim-api-key")
    with pytest.raises(StartError, match="set STALWART_SECRET_SIM_API_KEY"):
        provision_sim_key(app, EventBus(log=False))
    monkeypatch.setenv("STALWART_SECRET_SIM_API_KEY", "sk-from-the-environment")
    assert provision_sim_key(dataclasses.replace(app), EventBus(log=False)) is False
