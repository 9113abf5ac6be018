"""An agent whose tools come from an MCP server: ``stalwart run examples.mcp_notes.app:app``.

The notes server (``server.py`` beside this file) is started by the agent's process over
stdio; the simulated model reads the notes, then adds the one the user asks for. The
notes file is ``$NOTES_FILE`` (default ``notes.txt`` in the working directory).
"""

from __future__ import annotations

import os
import pathlib
import sys

from stalwart.agent import App, LLMAgent
from stalwart.llm.sim import Rule, Scenario
from stalwart.tools.mcp import MCPServer, MCPToolOptions

SERVER = pathlib.Path(__file__).with_name("server.py")

notes = MCPServer(
    "notes",
    command=[sys.executable, str(SERVER), "--notes", os.environ.get("NOTES_FILE", "notes.txt")],
    prefix="notes_",
    tools={
        "read_notes": MCPToolOptions(scopes=["notes:read"]),
        "add_note": MCPToolOptions(
            scopes=["notes:write"],
            side_effect=True,
            key_argument="idempotency_key",
            deduplicates=True,  # the server ignores a key it has seen
        ),
    },
)

NOTE = r"note: (?P<text>[^.]+)\."
SCENARIO = Scenario(
    (
        Rule(match=NOTE, call="notes_read_notes", arguments={}),
        Rule(match=NOTE, requires=("notes_read_notes",), call="notes_add_note",
             arguments={"text": "{text}"}),
        Rule(match=NOTE, requires=("notes_read_notes", "notes_add_note"),
             answer="Noted: {text}."),
    )
)  # fmt: skip

app = App(
    agents=[
        LLMAgent(
            name="scribe",
            model="main",
            system="You keep the user's notes.",
            tools=notes.tools,
            scopes=["notes:read", "notes:write"],
        )
    ],
    models={"main": ["sim:strong"]},
    sim=True,
    scenario=SCENARIO,
)
