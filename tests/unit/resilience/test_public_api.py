from __future__ import annotations

import stalwart
import stalwart.resilience as resilience


def test_resilience_exports_exist_and_are_sorted() -> None:
    assert resilience.__all__ == sorted(resilience.__all__)
    missing = [name for name in resilience.__all__ if not hasattr(resilience, name)]
    assert missing == []


def test_top_level_reexports_the_main_names() -> None:
    for name in ("Policy", "RetryPolicy", "CircuitBreaker", "Deadline", "deadline_scope"):
        assert getattr(stalwart, name) is getattr(resilience, name)
        assert name in stalwart.__all__
