"""LC-1 is partial, not complete, when the load generator could not send a 2x or 3x level."""

from __future__ import annotations

from stalwart.verify._checks_load import OFFERED_SHARE, fell_behind


def level(name: str, share: float | None) -> dict:
    return {"level": name, "offered_share": share}


def test_only_the_2x_and_3x_levels_sent_short_of_their_rate_are_named():
    assert fell_behind([level("1x", 0.5), level("2x", 1.02), level("3x", 0.95)]) == []
    assert fell_behind([level("1x", 1.0), level("2x", 0.93), level("3x", 0.66)]) == [
        "3x sent 66% of its rate"
    ]
    assert fell_behind([level("1x", 1.0), level("2x", None), level("3x", None)]) == []
    assert OFFERED_SHARE == 0.9
