"""stalwart: a production runtime for AI agents.

The names below are what an app is written with::

    from stalwart import App, LLMAgent, PythonAgent, TaskContext, tool

``__all__`` is the curated top-level API (tests/unit/test_exports.py keeps it so);
each subpackage (``stalwart.agent``, ``stalwart.guard``, ``stalwart.llm``, …) has its
own ``__all__`` for the rest, and every exception lives in :mod:`stalwart.errors`.
"""

import warnings as _warnings
from typing import Any as _Any

from stalwart.agent import App, LLMAgent, PythonAgent, TaskContext, VerifyProfile, http_client
from stalwart.clock import Clock, SystemClock
from stalwart.config import RuntimeSettings, Timeouts
from stalwart.guard import Budget, Security
from stalwart.llm import Provider
from stalwart.node import Node, app_node
from stalwart.observe import get_logger, log_context
from stalwart.resilience import BreakerConfig, Policy, RetryPolicy
from stalwart.runtime import (
    Agent,
    AgentContext,
    AgentRef,
    ChildSpec,
    DynamicSupervisorSpec,
    Runtime,
    SupervisorSpec,
)
from stalwart.tools import tool

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentContext",
    "AgentRef",
    "App",
    "BreakerConfig",
    "Budget",
    "ChildSpec",
    "Clock",
    "DynamicSupervisorSpec",
    "LLMAgent",
    "Node",
    "Policy",
    "Provider",
    "PythonAgent",
    "RetryPolicy",
    "Runtime",
    "RuntimeSettings",
    "Security",
    "SupervisorSpec",
    "SystemClock",
    "TaskContext",
    "Timeouts",
    "VerifyProfile",
    "__version__",
    "app_node",
    "get_logger",
    "http_client",
    "log_context",
    "tool",
]


def __getattr__(name: str) -> _Any:
    """``stalwart.ConfigError`` and the other exceptions, for code written before they
    left the top level: they live in :mod:`stalwart.errors` (not in ``__all__``)."""
    from stalwart import errors

    if name in errors.__all__:
        _warnings.warn(
            f"stalwart.{name} moved: import it from stalwart.errors",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(errors, name)
    raise AttributeError(f"module 'stalwart' has no attribute {name!r}")
