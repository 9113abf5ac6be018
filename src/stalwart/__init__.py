"""stalwart: a production runtime for AI agents.

The public API is exactly ``__all__`` below; everything else is private and may
change. See ``docs/`` for each capability.
"""

from stalwart.clock import Clock, SystemClock
from stalwart.config import RuntimeSettings, Timeouts
from stalwart.errors import (
    CallError,
    CallTimeout,
    CircuitOpen,
    ConfigError,
    CorruptRecord,
    DeadlineExceeded,
    DependencyError,
    GaveUp,
    InvalidMessage,
    LeaseLost,
    NodeShutdown,
    NonDeterminismError,
    NoProcess,
    ProtocolError,
    RateLimited,
    RemoteError,
    RetriesExhausted,
    Shutdown,
    StalwartError,
    StartError,
    StoreError,
    StoreUnavailable,
    SupervisorError,
)
from stalwart.node import Node
from stalwart.runtime import (
    Agent,
    AgentContext,
    AgentRef,
    ChildSpec,
    ExitInfo,
    Runtime,
    SupervisorSpec,
)

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentContext",
    "AgentRef",
    "CallError",
    "CallTimeout",
    "ChildSpec",
    "CircuitOpen",
    "Clock",
    "ConfigError",
    "CorruptRecord",
    "DeadlineExceeded",
    "DependencyError",
    "ExitInfo",
    "GaveUp",
    "InvalidMessage",
    "LeaseLost",
    "NoProcess",
    "Node",
    "NodeShutdown",
    "NonDeterminismError",
    "ProtocolError",
    "RateLimited",
    "RemoteError",
    "RetriesExhausted",
    "Runtime",
    "RuntimeSettings",
    "Shutdown",
    "StalwartError",
    "StartError",
    "StoreError",
    "StoreUnavailable",
    "SupervisorError",
    "SupervisorSpec",
    "SystemClock",
    "Timeouts",
    "__version__",
]
