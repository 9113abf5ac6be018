import pytest

from stalwart import RuntimeSettings, Timeouts
from stalwart.errors import ConfigError


def test_defaults_are_the_checklists():
    t = Timeouts()
    assert (t.health, t.model, t.tool) == (3.0, 60.0, 15.0)
    assert RuntimeSettings().hang_threshold == 1.5


@pytest.mark.parametrize(
    ("kind", "value"), [("health", 1.0), ("model", 300), ("tool", 4), ("agent_call", 0)]
)
def test_out_of_range_timeouts_are_rejected_with_the_range(kind, value):
    with pytest.raises(ConfigError, match=f"timeouts.{kind} = .* outside the allowed range"):
        Timeouts(**{kind: value})


def test_unknown_timeout_kind_is_an_error_not_ignored():
    with pytest.raises(ConfigError, match="unknown timeout kind"):
        Timeouts.from_mapping({"modle": 60})


@pytest.mark.parametrize(
    ("field", "value"),
    [("heartbeat_interval", 0), ("hang_after_missed", 0.5), ("max_frame_bytes", 10)],
)
def test_bad_runtime_settings_name_the_setting(field, value):
    with pytest.raises(ConfigError, match=f"runtime.{field}"):
        RuntimeSettings(**{field: value})
