"""Agents: the durable agent loop, plain-Python agents, and apps. See docs/agents.md."""

from stalwart.agent._context import TaskContext
from stalwart.agent._guarded import scope_table
from stalwart.agent._http_client import http_client
from stalwart.agent._loop import run_llm_agent
from stalwart.agent._profile import VerifyProfile
from stalwart.agent._resources import Resources, Usage
from stalwart.agent._setup import load_app
from stalwart.agent._spec import App, LLMAgent, PythonAgent
from stalwart.agent._taskagent import TaskAgent

__all__ = [
    "App",
    "LLMAgent",
    "PythonAgent",
    "Resources",
    "TaskAgent",
    "TaskContext",
    "Usage",
    "VerifyProfile",
    "http_client",
    "load_app",
    "run_llm_agent",
    "scope_table",
]
