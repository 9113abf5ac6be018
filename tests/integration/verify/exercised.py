"""What a `complete` verdict must not hide: evidence that says nothing was exercised.

Shared by the tests that run `stalwart verify` on an app (examples, an app this project
did not write): a `complete` item whose evidence shows nothing exercised, or that verify
itself failed, is a wrong verdict whatever the item.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["internal_errors", "unexercised_complete"]


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield path, str(key), inner
            yield from _walk(inner, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for n, inner in enumerate(value):
            yield from _walk(inner, f"{path}[{n}]")


def _nothing_exercised(item: dict[str, Any]) -> list[str]:
    """Where ``item``'s evidence says nothing (or a part not) was exercised."""
    found: list[str] = []
    if "not exercised" in item["measured"]:
        found.append(f"measured: {item['measured']}")
    evidence = item["evidence"]
    for path, key, value in _walk(evidence):
        where = f"{path}.{key}" if path else key
        if key == "exercised" and value is False:
            found.append(f"{where} is false")
        if isinstance(value, str) and value.startswith("not exercised"):
            found.append(f"{where}: {value}")
    # the counts the checks name as their "exercised"
    if item["id"] == "SM-2" and not evidence.get("resumed"):
        found.append("SM-2: no task resumed")
    if item["id"] == "SM-4":
        delivered = sum(t.get("keys_delivered", 0) for t in evidence.get("per_tool", {}).values())
        if not delivered:
            found.append("SM-4: no side-effect call delivered")
    if item["id"] == "GD-2" and not evidence.get("per_tool"):
        found.append("GD-2: no tool taken down")
    return found


def unexercised_complete(items: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Each `complete` item whose evidence says nothing (or some part not) was exercised."""
    out = {}
    for item_id, item in items.items():
        if item["status"] == "complete":
            found = _nothing_exercised(item)
            if found or not item["measured"]:
                out[item_id] = found or ["no measured value"]
    return out


def internal_errors(items: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Items verify could not judge because of its own error or timeout (a traceback in
    the evidence): never the app's verdict."""
    return {
        k: v["evidence"]["traceback"][-1500:]
        for k, v in items.items()
        if "traceback" in v["evidence"]
    }
