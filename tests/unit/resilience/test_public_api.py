from __future__ import annotations

import stalwart
import stalwart.resilience as resilience


def test_resilience_exports_exist_and_are_sorted() -> None:
    assert resilience.__all__ == sorted(resilience.__all__)
    missing = [name for name in resilience.__all__ if not hasattr(resilience, name)]
    assert missing == []


def test_top_level_reexports_the_policy_names_and_the_rest_stays_here() -> None:
    """The curated top level (tests/unit/test_exports.py) has what wraps one's own calls;
    breakers, deadlines and the classifier are imported from stalwart.resilience."""
    for name in ("Policy", "RetryPolicy", "BreakerConfig"):
        assert getattr(stalwart, name) is getattr(resilience, name)
        assert name in stalwart.__all__
    for name in ("CircuitBreaker", "Deadline", "deadline_scope", "classify"):
        assert name in resilience.__all__ and name not in stalwart.__all__
