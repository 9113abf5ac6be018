import pytest

from stalwart.errors import ConfigError
from stalwart.runtime import ChildSpec, Runtime, SupervisorSpec
from stalwart.runtime._spec import load_agent
from stalwart.testing import ProbeAgent


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"restart": "sometimes"}, "restart must be one of"),
        ({"shutdown": "infinity"}, "there is no 'infinity'"),
        ({"shutdown": 0}, "shutdown must be"),
        ({"memory_limit_mb": -5}, "memory_limit_mb"),
        ({"args": {"d": object()}}, "args"),
        ({"agent": "no_colon"}, "must look like"),
        ({"id": ""}, "non-empty"),
    ],
)
def test_child_spec_rejects_bad_values_by_name(kwargs, message):
    base = {"id": "a", "agent": ProbeAgent}
    with pytest.raises(ConfigError, match=message):
        ChildSpec(**{**base, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "one_for_some"}, "strategy must be one of"),
        ({"intensity": -1}, "intensity must be >= 0"),
        ({"period": 0}, "period must be"),
        ({"children": [ChildSpec("a", ProbeAgent), ChildSpec("a", ProbeAgent)]}, "duplicate"),
        ({"children": ["not a spec"]}, "must be ChildSpec"),
    ],
)
def test_supervisor_spec_rejects_bad_values_by_name(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SupervisorSpec(**{"id": "root", "children": [], **kwargs})


def test_ids_must_be_unique_across_the_tree():
    inner = SupervisorSpec("inner", [ChildSpec("a", ProbeAgent)])
    with pytest.raises(ConfigError, match=r"duplicated: \['a'\]"):
        Runtime(SupervisorSpec("root", [ChildSpec("a", ProbeAgent), inner]))


def test_agent_references_are_checked_on_load():
    assert load_agent("stalwart.testing:ProbeAgent") is ProbeAgent
    with pytest.raises(ConfigError, match="cannot import agent module"):
        load_agent("no.such.module:X")
    with pytest.raises(ConfigError, match="has no attribute"):
        load_agent("stalwart.testing:Nope")
    with pytest.raises(ConfigError, match="not a subclass"):
        load_agent("stalwart.testing:FakeClock")
