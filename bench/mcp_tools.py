"""What a call through ``stalwart.tools.mcp`` adds over the bare ``mcp`` client.

The same MCP server program (``examples/mcp_notes/server.py``, over stdio) is run
twice: one process is called with the official client alone (``ClientSession.call_tool``),
the other through an :class:`~stalwart.tools.mcp.MCPServer` tool (``Tool.invoke``:
argument validation against the server's schema, the per-call deadline, the retry loop,
the server's breaker, metrics). Calls alternate between the two, so both see the same
load, and each is timed on its own with ``time.perf_counter_ns``. Writes
``bench/results/mcp_tools.json``: per path p50 / p99 in milliseconds, and the added p50 / p99.

Usage: ``python bench/mcp_tools.py [--quick]`` (``--quick``: 100 calls per path instead of 1000).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

from mcp import ClientSession, StdioServerParameters, stdio_client

from stalwart.resilience import BreakerRegistry
from stalwart.tools.mcp import MCPServer

ROOT = pathlib.Path(__file__).resolve().parents[1]
SERVER = ROOT / "examples" / "mcp_notes" / "server.py"
RESULTS = ROOT / "bench" / "results" / "mcp_tools.json"


def percentile(sorted_ns: list[int], q: float) -> float:
    index = min(len(sorted_ns) - 1, round(q * (len(sorted_ns) - 1)))
    return round(sorted_ns[index] / 1e6, 3)


async def measure(calls: int, notes: pathlib.Path) -> dict[str, object]:
    command = [sys.executable, str(SERVER), "--notes", str(notes)]
    server = MCPServer("bench", command=command, tools=["read_notes"])
    params = StdioServerParameters(command=command[0], args=command[1:])
    bare: list[int] = []
    through: list[int] = []
    clock = time.perf_counter_ns
    async with (
        server,
        stdio_client(params) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        await session.list_tools()
        (tool,) = server.tools
        breakers = BreakerRegistry()
        for _ in range(10):  # warm both paths (imports, validators, first requests)
            await session.call_tool("read_notes", {"prefix": ""})
            await tool.invoke({"prefix": ""}, breakers=breakers)
        for _ in range(calls):
            start = clock()
            await session.call_tool("read_notes", {"prefix": ""})
            bare.append(clock() - start)
            start = clock()
            result = await tool.invoke({"prefix": ""}, breakers=breakers)
            through.append(clock() - start)
            assert result.ok, result
    bare.sort()
    through.sort()
    return {
        "calls_per_path": calls,
        "transport": "stdio",
        "bare_p50_ms": percentile(bare, 0.5),
        "bare_p99_ms": percentile(bare, 0.99),
        "stalwart_p50_ms": percentile(through, 0.5),
        "stalwart_p99_ms": percentile(through, 0.99),
        "added_p50_ms": round(percentile(through, 0.5) - percentile(bare, 0.5), 3),
        "added_p99_ms": round(percentile(through, 0.99) - percentile(bare, 0.99), 3),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_1m_at_start": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(measure(100 if args.quick else 1000, pathlib.Path(tmp) / "n.txt"))
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
