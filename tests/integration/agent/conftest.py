from __future__ import annotations

from typing import Any

import pytest
from examples.helpdesk.app import SCENARIO

from stalwart.agent import App, LLMAgent, Resources, TaskContext, run_llm_agent
from stalwart.agent._setup import build_models
from stalwart.durable import Runner, SQLiteStore
from stalwart.llm.sim import SIM_URL, SimServer
from stalwart.observe import EventBus
from stalwart.resilience import BreakerRegistry
from stalwart.tools import ToolRegistry


@pytest.fixture
def sim(monkeypatch):
    with SimServer(scenario=SCENARIO) as server:
        monkeypatch.setenv("STALWART_SIM_URL", server.url)
        yield server


@pytest.fixture
async def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "agent.db"))
    await s.open()
    yield s
    await s.close()


class Inline:
    """Runs an LLMAgent's tasks in this process: real sim, real store, real tools."""

    def __init__(
        self,
        sim: SimServer,
        store: SQLiteStore,
        agent: LLMAgent,
        chain: tuple[str, ...] = ("sim:strong", "sim:weak"),
        sim_url: str | None = None,
    ) -> None:
        self.sim_url = sim_url  # set for this agent's tasks only (several sims at once)
        self.events = EventBus(log=False)
        app = App(agents=[agent], models={agent.model: list(chain)})
        self.models = build_models(app, {agent.model}, sim.url, self.events)
        self.tools = ToolRegistry(agent.tools, breakers=BreakerRegistry())
        self.resources = Resources(
            agent=agent.name,
            models=self.models,
            tools=self.tools,
            scopes=frozenset(agent.scopes),
            callable_agents=frozenset(),
            runtime=None,
            events=self.events,
        )
        self.agent = agent
        self.runner = Runner(store, owner="inline", events=self.events)

    async def run(self, task_input: Any) -> Any:
        async def workflow(ctx, value):
            if self.sim_url:
                SIM_URL.set(self.sim_url)
            return await run_llm_agent(
                TaskContext(ctx, self.resources, model=self.agent.model), self.agent, value
            )

        task_id = await self.runner.submit(self.agent.name, task_input)
        return await self.runner.run(task_id, workflow)

    async def close(self) -> None:
        for model in self.models.values():
            await model.aclose()
