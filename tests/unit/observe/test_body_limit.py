"""The body-size limit holds for chunked bodies too (no Content-Length to check up front)."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from stalwart.server._app import _BodyLimit


async def echo_size(request: Request) -> JSONResponse:
    return JSONResponse({"size": len(await request.body())})


async def test_chunked_body_over_the_limit_gets_413():
    async def as_json(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    inner = Starlette(
        routes=[Route("/", echo_size, methods=["POST"])],
        exception_handlers={HTTPException: as_json},  # as the node's app has
    )
    app = _BodyLimit(inner, limit=10_000)
    transport = httpx.ASGITransport(app=app)

    async def chunks(n: int):
        for _ in range(n):
            yield b"y" * 4096

    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        small = await c.post("/", content=chunks(2))
        assert small.status_code == 200 and small.json() == {"size": 8192}
        big = await c.post("/", content=chunks(5))
        assert big.status_code == 413 and "10000 bytes" in big.json()["error"]
        declared = await c.post("/", content=b"z" * 20_000)
        assert declared.status_code == 413
