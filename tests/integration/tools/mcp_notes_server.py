"""A tiny MCP server for the tests: a read tool, a side-effect tool, a slow tool.

Run as ``python mcp_notes_server.py --notes FILE [--http PORT_FILE] [--port N]``: over
stdio by default; with ``--http`` over streamable HTTP on 127.0.0.1 (port ``--port``,
or a free one), writing the port it listens on to ``PORT_FILE`` once it accepts.
Each delivered side effect appends one line ``key<TAB>text`` to the notes file, so a
test counts deliveries per idempotency key. ``--log FILE`` gets ``start <pid>`` when
the server starts and ``<tool> <pid>`` when a call begins; with ``--refuse-if FILE``
the server exits at once (status 3) while that file exists: a server that cannot start.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import socket

from mcp.server.mcpserver import MCPServer


def build(notes: pathlib.Path, log: pathlib.Path | None = None) -> MCPServer:
    server = MCPServer("notes")

    def began(what: str) -> None:
        if log is not None:
            with log.open("a") as f:
                f.write(f"{what} {os.getpid()}\n")

    began("start")

    @server.tool()
    def read_notes(prefix: str = "") -> dict[str, object]:
        """Read the notes (those starting with ``prefix``)."""
        began("read_notes")
        lines = notes.read_text().splitlines() if notes.exists() else []
        texts = [line.split("\t", 1)[-1] for line in lines]
        return {"notes": [t for t in texts if t.startswith(prefix)], "pid": os.getpid()}

    @server.tool()
    def add_note(text: str, idempotency_key: str = "") -> dict[str, object]:
        """Append a note (a side effect: one line in the notes file)."""
        began("add_note")
        with notes.open("a") as f:
            f.write(f"{idempotency_key}\t{text}\n")
        return {"added": text}

    @server.tool()
    async def slow_add(text: str, seconds: float, idempotency_key: str = "") -> dict[str, object]:
        """Append a note, then wait ``seconds`` before answering (a slow side effect)."""
        began("slow_add")
        with notes.open("a") as f:
            f.write(f"{idempotency_key}\t{text}\n")
        await asyncio.sleep(seconds)
        return {"added": text}

    @server.tool()
    async def slow(seconds: float) -> str:
        """Wait ``seconds`` and answer."""
        began("slow")
        await asyncio.sleep(seconds)
        return "done"

    @server.tool()
    def fail(reason: str) -> str:
        """Always fails with ``reason``."""
        raise ValueError(reason)

    return server


async def serve_http(server: MCPServer, port: int, port_file: pathlib.Path) -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    app = server.streamable_http_app(host="127.0.0.1")
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    web = uvicorn.Server(config)

    async def announce() -> None:
        while not web.started:
            await asyncio.sleep(0.01)
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(sock.getsockname()[1]))
        tmp.replace(port_file)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(announce())
        await web.serve(sockets=[sock])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--notes", required=True)
    parser.add_argument("--http", default=None, help="serve over HTTP; write the port here")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", default=None)
    parser.add_argument("--refuse-if", default=None)
    args = parser.parse_args()
    if args.refuse_if and os.path.exists(args.refuse_if):
        raise SystemExit(3)
    server = build(pathlib.Path(args.notes), pathlib.Path(args.log) if args.log else None)
    if args.http is None:
        server.run()
    else:
        asyncio.run(serve_http(server, args.port, pathlib.Path(args.http)))


if __name__ == "__main__":
    main()
