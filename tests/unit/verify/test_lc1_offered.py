"""LC-1 is partial, not complete, when the load generator fell behind a 2x or 3x level."""

from __future__ import annotations

from stalwart.verify._checks_load import LATE_SHARE, fell_behind


def level(name: str, lag: float | None, share: float = 1.0) -> dict:
    return {"level": name, "send_lag_s": lag, "offered_share": share}


def test_only_the_2x_and_3x_levels_whose_generator_ran_late_are_named():
    # 8 s levels: late by more than 0.8 s
    assert fell_behind([level("1x", 3.0), level("2x", 0.05), level("3x", 0.8)], 8.0) == []
    assert fell_behind([level("1x", 0.0), level("2x", 0.2), level("3x", 2.5)], 8.0) == [
        "3x sent an arrival 2.50 s after it was due"
    ]
    # a sparse Poisson draw (fewer arrivals than the rate) on time is not falling behind
    assert fell_behind([level("1x", 0.0), level("2x", 0.01, 0.8), level("3x", 0.0, 0.7)], 2) == []
    assert fell_behind([level("1x", None), level("2x", None), level("3x", None)], 8.0) == []
    assert LATE_SHARE == 0.1
