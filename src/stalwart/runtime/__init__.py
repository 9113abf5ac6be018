"""The process runtime: agent processes, OTP supervisors, messages with deadlines.

See ``docs/runtime.md`` for the guarantees and ``_supervisor.py`` for the rules.
"""

from stalwart.runtime._agent import Agent, AgentContext
from stalwart.runtime._dynamic import DynamicSupervisor
from stalwart.runtime._host import ProcessHost
from stalwart.runtime._process import AgentProcess, AgentRef, ExitInfo
from stalwart.runtime._pulse import BLAME, Blame
from stalwart.runtime._runtime import Runtime
from stalwart.runtime._spec import (
    ChildSpec,
    DynamicSupervisorSpec,
    Restart,
    Strategy,
    SupervisorSpec,
)
from stalwart.runtime._supervisor import ChildCounts, ChildInfo, Supervisor

__all__ = [
    "BLAME",
    "Agent",
    "AgentContext",
    "AgentProcess",
    "AgentRef",
    "Blame",
    "ChildCounts",
    "ChildInfo",
    "ChildSpec",
    "DynamicSupervisor",
    "DynamicSupervisorSpec",
    "ExitInfo",
    "ProcessHost",
    "Restart",
    "Runtime",
    "Strategy",
    "Supervisor",
    "SupervisorSpec",
]
