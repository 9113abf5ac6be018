"""One HTTP client per process and event loop, for the HTTP calls of an app's tools.

A tool that builds an ``httpx.AsyncClient`` for each call pays for it on every call:
loading the CA bundle took about 30 ms of the agent's event loop, and under load that
pushed the LangGraph example's tool calls past their deadlines. A client kept in a
module global breaks the other way: its connections belong to the event loop (and the
process) that opened them, and an agent process is forked from the node's fork server,
while a test suite runs each test in an event loop of its own. :func:`http_client`
keeps one client per process and loop: the first call in a loop builds it, later calls
get it back, a new loop or a forked child gets a new one.

Before it, four apps of this repository (the helpdesk and the three framework examples)
each carried its own copy of this function.

What was avoided: a ``weakref.WeakKeyDictionary`` keyed by the loop (an event loop
written in C, such as uvloop's, may not take weak references; entries here hold one
when the loop allows it, else the loop itself), and closing the clients at exit (an
agent process's clients end with it; a closed loop's client is dropped, and its
connections ended with the loop).
"""

from __future__ import annotations

import asyncio
import os
import urllib.request
import weakref
from collections.abc import Callable

import httpx

from stalwart.llm import AsyncioTransport

__all__ = ["http_client"]

_LoopRef = Callable[[], asyncio.AbstractEventLoop | None]
_clients: dict[int, tuple[_LoopRef, int, httpx.AsyncClient]] = {}
"""``id(loop)`` -> (the loop, by weak reference when it allows one; the process's pid;
its client)."""


def http_client() -> httpx.AsyncClient:
    """The HTTP client of this process and event loop, for tools' calls.

    Connections are kept alive and shared by every call in the loop (up to 1,000 at once,
    100 kept idle); a request may take 60 s by the client's own timeout, 10 s to
    connect, but the tool's ``timeout=`` is its deadline and ends it first. Without a
    proxy in the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``), requests
    go through stalwart's asyncio transport (the model clients' own, less CPU per
    request than httpx's default); with one, through httpx's, which honours it. Do not
    close it: it lives as long as its loop.

    Must be called inside a running event loop (``RuntimeError`` otherwise)::

        from stalwart import http_client, tool

        @tool(scopes=["orders:read"], timeout=10)
        async def lookup_order(order_id: int) -> dict:
            r = await http_client().get(f"https://orders.example/api/{order_id}")
            r.raise_for_status()
            return r.json()
    """
    loop = asyncio.get_running_loop()
    pid = os.getpid()
    held = _clients.get(id(loop))
    if held is not None and held[0]() is loop and held[1] == pid:
        return held[2]
    for key, (held_loop, _, _) in list(_clients.items()):  # loops gone or closed: forgotten
        other = held_loop()
        if other is None or other.is_closed():
            del _clients[key]
    ref: _LoopRef
    try:
        ref = weakref.ref(loop)
    except TypeError:  # a loop without weak references: held, as long as it is open
        ref = lambda: loop  # noqa: E731
    client = _new_client()
    _clients[id(loop)] = (ref, pid, client)
    return client


def _new_client() -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
    timeout = httpx.Timeout(60.0, connect=10.0)
    # the variables the model clients read (llm._http.environment_proxy): one client
    # serves every URL, so any proxy at all takes httpx's transport, which also honours
    # NO_PROXY per request
    proxies = urllib.request.getproxies_environment()
    if any(proxies.get(scheme) for scheme in ("https", "http", "all")):
        return httpx.AsyncClient(timeout=timeout, limits=limits)
    return httpx.AsyncClient(timeout=timeout, transport=AsyncioTransport(limits=limits))
