"""A small MCP server written with the official ``mcp`` package: notes kept in a file.

``python examples/mcp_notes/server.py --notes notes.txt`` serves it over stdio (what
``stalwart.tools.mcp.MCPServer(command=[...])`` starts); ``--http PORT`` serves it over
streamable HTTP at ``http://127.0.0.1:PORT/mcp``. ``add_note`` is a side effect: it
appends one line, ``key<TAB>text``, and ignores a key it has already seen (it dedupes
on the idempotency key, so stalwart may retry it).
"""

from __future__ import annotations

import argparse
import pathlib

from mcp.server.mcpserver import MCPServer


def build(notes: pathlib.Path) -> MCPServer:
    server = MCPServer("notes")

    def lines() -> list[list[str]]:
        text = notes.read_text() if notes.exists() else ""
        return [line.split("\t", 1) for line in text.splitlines()]

    @server.tool()
    def read_notes(prefix: str = "") -> dict[str, list[str]]:
        """Read the notes that start with ``prefix`` (all by default)."""
        return {"notes": [text for _, text in lines() if text.startswith(prefix)]}

    @server.tool()
    def add_note(text: str, idempotency_key: str) -> dict[str, object]:
        """Add a note. A repeated idempotency key adds nothing."""
        if any(key == idempotency_key for key, _ in lines()):
            return {"added": text, "repeated": True}
        with notes.open("a") as f:
            f.write(f"{idempotency_key}\t{text}\n")
        return {"added": text, "repeated": False}

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--notes", default="notes.txt")
    parser.add_argument("--http", type=int, default=None, help="serve over HTTP on this port")
    args = parser.parse_args()
    server = build(pathlib.Path(args.notes))
    if args.http is None:
        server.run()
    else:
        server.run("streamable-http", host="127.0.0.1", port=args.http)


if __name__ == "__main__":
    main()
