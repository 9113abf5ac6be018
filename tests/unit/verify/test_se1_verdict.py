"""SE-1's verdict on a rotation under load: a rotation that replaced a key no call had
used yet did not show a rotation of a key in use, so the item is not complete."""

from __future__ import annotations

from typing import Any

import pytest

from stalwart.verify._checks_security import rotation_outcome


def _rotation(*served: bool, failed: int = 0, old_after: int = 0) -> dict[str, Any]:
    return {
        "rotations": [{"rotation": n, "replaced_key_served": s} for n, s in enumerate(served, 1)],
        "failed_tasks": [{"task": f"t{i}"} for i in range(failed)],
        "old_keys_presented_after_settle": old_after,
        "newest_key_requests_after_settle": 12,
        "unauthorized_401": 3,
        "allowed_401": 16,
    }


def test_every_rotation_replaced_a_key_in_use_is_complete() -> None:
    assert rotation_outcome({}, _rotation(True, True)).status == "complete"


def test_a_rotation_of_a_key_never_used_is_partial_and_names_it() -> None:
    outcome = rotation_outcome({}, _rotation(True, False))
    assert outcome.status == "partial"
    assert outcome.remediation is not None and "rotation 2 replaced a key" in outcome.remediation


@pytest.mark.parametrize(
    "rotation", [_rotation(True, False, failed=1), _rotation(True, True, old_after=2)]
)
def test_a_failed_call_or_an_old_key_fails_whatever_was_served(rotation: dict[str, Any]) -> None:
    assert rotation_outcome({}, rotation).status == "failed"
