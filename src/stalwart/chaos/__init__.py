"""stalwart.chaos: fault injection, load and soak runs against a live node.

The fault model, and what the package guarantees about it:

- **What can fail**: agent processes (SIGKILL, SIGSTOP), dependencies (the sim's
  outages, error rates, latency and hangs; a TCP proxy's latency, black holes
  and resets), the store (a held write lock, damaged journal records, a damaged
  database file, a full filesystem), a whole node (a second node's process
  group is SIGKILLed), and -- only when the operator passes its command -- a
  PostgreSQL restart.
- **Every fault is bounded and undone**: each has a duration, is registered with
  its undo action before it can outlive anything, and is undone when its time
  is up, when the run ends, or when the interpreter exits (see ``_undo``).
- **Runs are reproducible**: task inputs, arrival times and the fault plan are
  functions of the seed.
- **A run's verdict is measured, not assumed**: every task is followed to its
  end (lost = not finished by the drain deadline), duplicates come from the
  services' own per-key delivery counts, and results are compared with a
  fault-free run of the same tasks.

Only loopback traffic is generated, and only on the node this process starts.
"""

from stalwart.chaos._chaos import ChaosConfig, run_chaos
from stalwart.chaos._driver import Driver, Phase, comparable
from stalwart.chaos._faults import KINDS, OPT_IN, FaultOutcome, FaultSpec, inject
from stalwart.chaos._load import LoadConfig, run_load
from stalwart.chaos._plan import PlanConfig, make_plan, run_plan
from stalwart.chaos._proxy import FaultProxy, ProxyFault
from stalwart.chaos._soak import TOLERANCES, SoakConfig, run_soak, trends
from stalwart.chaos._stats import Tolerance, Trend, fit_trend, percentiles, t_quantile
from stalwart.chaos._target import Target, TargetConfig, run_target
from stalwart.chaos._undo import UndoStack

__all__ = [
    "KINDS",
    "OPT_IN",
    "TOLERANCES",
    "LoadConfig",
    "SoakConfig",
    "run_load",
    "run_soak",
    "trends",
    "ChaosConfig",
    "Driver",
    "FaultOutcome",
    "FaultProxy",
    "FaultSpec",
    "Phase",
    "PlanConfig",
    "ProxyFault",
    "Target",
    "TargetConfig",
    "Tolerance",
    "Trend",
    "UndoStack",
    "comparable",
    "fit_trend",
    "inject",
    "make_plan",
    "percentiles",
    "run_chaos",
    "run_plan",
    "run_target",
    "t_quantile",
]
