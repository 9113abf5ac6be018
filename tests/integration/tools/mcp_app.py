"""What the MCP node tests' TOML apps reference (imported by their agent processes)."""

from __future__ import annotations

from typing import Any

from stalwart.agent import TaskContext
from stalwart.llm.sim import Rule, Scenario

NOTE = r"note: (?P<text>[a-z ]+)\."
REMEMBER = r"remember: (?P<text>[a-z ]+)\. Take (?P<seconds>\d+) seconds\."

SCENARIO = Scenario(
    (
        Rule(match=NOTE, call="notes_read_notes", arguments={"prefix": ""}),
        Rule(match=NOTE, requires=("notes_read_notes",), call="notes_add_note",
             arguments={"text": "{text}"}),
        Rule(match=NOTE, requires=("notes_read_notes", "notes_add_note"), call="notes_slow",
             arguments={"seconds": 3}),
        Rule(match=NOTE, requires=("notes_read_notes", "notes_add_note", "notes_slow"),
             answer="Noted: {text}. The server said {result:notes_add_note}"),
        Rule(match=REMEMBER, call="notes_slow_add",
             arguments={"text": "{text}", "seconds": "{seconds}"}),
        Rule(match=REMEMBER, requires=("notes_slow_add",),
             answer="Remembered: {text}. {result:notes_slow_add}"),
    )
)  # fmt: skip


async def peek(ctx: TaskContext, task_input: Any) -> dict[str, Any]:
    """A Python agent granted notes:read only, trying both tools."""
    read = await ctx.call_tool("notes_read_notes", {"prefix": ""})
    write = await ctx.call_tool("notes_add_note", {"text": "sneaky"})
    return {"read": read.status, "notes": read.value, "write": write.status, "why": write.error}
