"""The level each event logs at: the table, its documentation and its dynamic rules agree."""

from __future__ import annotations

import pathlib
import re

import pytest

from stalwart.observe import EVENT_LEVELS, event_level

ROOT = pathlib.Path(__file__).resolve().parents[3]
# emitted under a computed name: f"alert_{notice.status}", f"task_{status}"
COMPUTED = {"alert_firing", "task_quarantined", "task_failed"}


def _doc_rows() -> dict[str, str]:
    """Event name -> level cell of docs/observability.md's event-level table."""
    page = (ROOT / "docs" / "observability.md").read_text()
    section = page.split("### Event levels", 1)[1].split("\n### ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            for name in re.findall(r"`([\w.]+)`", cells[0]):
                rows[name] = cells[1]
    return rows


def test_every_listed_event_is_documented_at_its_level():
    rows = _doc_rows()
    for name, rule in EVENT_LEVELS.items():
        assert name in rows, f"{name} is not in docs/observability.md#event-levels"
        if isinstance(rule, str):
            assert rows[name] == rule, (name, rows[name], rule)
        else:  # a rule on the fields: the page says both levels it can give
            assert len(set(re.findall(r"\b(info|warning|error)\b", rows[name]))) == 2, name


def test_every_listed_event_is_emitted_somewhere():
    source = "\n".join(
        p.read_text() for p in (ROOT / "src" / "stalwart").rglob("*.py") if p.name != "_levels.py"
    )
    for name in EVENT_LEVELS.keys() - COMPUTED:
        assert f'"{name}"' in source, f"{name} is listed but nothing emits it (a typo?)"


@pytest.mark.parametrize(
    ("name", "fields", "level"),
    [
        ("agent_exited", {"reason": "killed", "signal": "SIGKILL"}, "warning"),
        ("agent_exited", {"reason": "hung"}, "warning"),
        ("agent_exited", {"reason": "exit_code", "exit_code": 1}, "warning"),
        ("agent_exited", {"reason": "normal", "exit_code": 0}, "info"),
        ("agent_exited", {"reason": "shutdown"}, "info"),
        ("agent_exited", {"reason": "restart_requested"}, "info"),
        ("alert_firing", {"severity": "warning"}, "warning"),
        ("alert_firing", {"severity": "critical"}, "error"),
        ("alert_resolved", {"severity": "critical"}, "info"),
        ("breaker_transition", {"to_state": "open"}, "warning"),
        ("breaker_transition", {"to_state": "forced_open"}, "warning"),
        ("breaker_transition", {"to_state": "half_open"}, "info"),
        ("supervisor_gave_up", {}, "error"),
        ("agent_started", {}, "info"),
        ("some_event_nobody_listed", {}, "info"),
    ],
)
def test_event_level(name, fields, level):
    assert event_level(name, fields) == level
