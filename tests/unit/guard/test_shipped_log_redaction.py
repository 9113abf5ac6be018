"""An agent's log line is redacted in the agent and taken as it is by the node, except
when the node's redactor knows a value the line holds (a secret the node learned from
the vault) or is not the redactor agents run: then the node redacts it again."""

from __future__ import annotations

import io
import json

from stalwart.guard import Redactor, default_redactor, install_redactor
from stalwart.observe import configure_logging, get_logger, ingest_redacted, set_redactor

EMAIL = "pat.quinn@example.org"


def _agent_line(**fields: object) -> str:
    """A line as an agent process ships it: its own redactor ran (install_redactor)."""
    shipped: list[str] = []
    install_redactor()
    configure_logging(stream=io.StringIO(), ship=shipped.append, agent_id="a")
    try:
        get_logger("agent").info("agent_step", **fields)
    finally:
        configure_logging()
        set_redactor(None)
    return shipped[0]


def _node_writes(line: str, redactor: Redactor | None = None) -> dict[str, object]:
    out = io.StringIO()
    configure_logging(stream=out, node="n1")
    install_redactor(redactor)
    try:
        ingest_redacted(line, agent_id="a")
    finally:
        set_redactor(None)
        configure_logging()
    text = out.getvalue()
    assert text.count("\n") == 1, text
    record: dict[str, object] = json.loads(text)
    return record


def test_the_agent_redacts_and_the_node_keeps_its_line() -> None:
    line = _agent_line(note=f"write to {EMAIL}")
    assert EMAIL not in line and "[REDACTED:email]" in line
    got = _node_writes(line)
    assert got["note"] == "write to [REDACTED:email]" and got["node"] == "n1"


def test_a_value_only_the_node_knows_is_removed_by_the_node() -> None:
    plain, quoted = "node-learned-7f3a91c2", 'node"learned\\q-55e1'
    line = _agent_line(note=f"key {plain}", other=f"key {quoted}")  # the agent never saw them
    assert plain in line and json.dumps(quoted)[1:-1] in line
    default_redactor().add_known(plain)  # as learn_vault_secrets does in the node
    got = _node_writes(line)
    assert plain not in json.dumps(got) and "[REDACTED:" in str(got["note"])
    default_redactor().add_known(quoted)
    line = _agent_line(other=f"key {quoted}")
    got = _node_writes(line)
    assert "learned" not in json.dumps(got), got  # found as JSON escaped it


def test_a_custom_node_redactor_sees_every_agent_line() -> None:
    line = _agent_line(note="a custom word: pineapple")

    class Fruit(Redactor):
        def redact_record(self, record: dict[str, object]) -> dict[str, object]:
            return {
                k: "[fruit]" if v == "a custom word: pineapple" else v for k, v in record.items()
            }

    got = _node_writes(line, Fruit())
    assert got["note"] == "[fruit]"
