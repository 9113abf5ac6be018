"""Child control on the HTTP API: OTP's supervisor calls for an operator.

========================================================  ==============================
``GET    /v1/supervisors``                                every supervisor: strategy,
                                                          intensity, counts, children
``GET    /v1/supervisors/{sup}/children``                 ``which_children`` and
                                                          ``count_children``
``POST   /v1/supervisors/{sup}/children/{id}/terminate``  ``terminate_child``
``POST   /v1/supervisors/{sup}/children/{id}/restart``    ``restart_child``
``DELETE /v1/supervisors/{sup}/children/{id}``            ``delete_child``
========================================================  ==============================

The mutations need the API token as every mutation does (see ``_auth``). Each
answers when the operation is done (a terminate waits for the child's
``shutdown`` at most). Errors: 404 for an unknown supervisor or child
(``not_found``), 409 with the OTP reason for a refused operation (``running``,
``restarting``, ``not_running``...), 502 when a restarted child fails to start
(its error in the message).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stalwart.errors import ChildError, StartError
from stalwart.runtime import AgentProcess, DynamicSupervisor, Supervisor
from stalwart.server._http import error
from stalwart.server._http import name as _name
from stalwart.server._views import NodeLike

__all__ = ["children_paths", "children_routes", "supervisor_view"]


def supervisor_view(sup: Supervisor) -> dict[str, Any]:
    """One supervisor as the API shows it: its settings, counts and children."""
    spec = sup.spec
    return {
        "id": sup.id,
        "state": sup.state,
        "dynamic": isinstance(sup, DynamicSupervisor),
        "strategy": spec.strategy,
        "intensity": spec.intensity,
        "period_s": spec.period,
        "counts": dataclasses.asdict(sup.count_children()),
        "children": [dataclasses.asdict(row) for row in sup.which_children()],
    }


def children_routes(node: NodeLike) -> list[Route]:
    """The routes above, for ``node``'s runtime."""

    def find(request: Request) -> Supervisor | Response:
        sup_id = _name(request.path_params["sup"], "supervisor id")
        for sup in node.runtime.supervisors():
            if sup.id == sup_id:
                return sup
        return error(404, f"no running supervisor {sup_id!r} in this node's tree")

    def child_id(request: Request) -> str:
        value = _name(request.path_params["child"], "child id")
        assert value is not None
        return value

    def refused(exc: ChildError) -> Response:
        status = 404 if exc.reason == "not_found" else 409
        return JSONResponse({"error": str(exc), "reason": exc.reason}, status_code=status)

    async def list_supervisors(_request: Request) -> Response:
        sups = [supervisor_view(s) for s in node.runtime.supervisors()]
        return JSONResponse({"node": node.id, "supervisors": sups})

    async def list_children(request: Request) -> Response:
        sup = find(request)
        if isinstance(sup, Response):
            return sup
        return JSONResponse(supervisor_view(sup))

    async def terminate(request: Request) -> Response:
        sup = find(request)
        if isinstance(sup, Response):
            return sup
        cid = child_id(request)
        try:
            await sup.terminate_child(cid)
        except ChildError as exc:
            return refused(exc)
        return JSONResponse({"supervisor": sup.id, "child": cid, "status": "terminated"})

    async def restart(request: Request) -> Response:
        sup = find(request)
        if isinstance(sup, Response):
            return sup
        cid = child_id(request)
        try:
            started = await sup.restart_child(cid)
        except ChildError as exc:
            return refused(exc)
        except StartError as exc:
            return error(502, f"child {cid!r} failed to start: {exc}")
        pid = started.pid if isinstance(started, AgentProcess) else None
        return JSONResponse({"supervisor": sup.id, "child": cid, "status": "running", "pid": pid})

    async def delete(request: Request) -> Response:
        sup = find(request)
        if isinstance(sup, Response):
            return sup
        cid = child_id(request)
        try:
            await sup.delete_child(cid)
        except ChildError as exc:
            return refused(exc)
        return JSONResponse({"supervisor": sup.id, "child": cid, "status": "deleted"})

    base = "/v1/supervisors/{sup}/children"
    return [
        Route("/v1/supervisors", list_supervisors, methods=["GET"]),
        Route(base, list_children, methods=["GET"]),
        Route(base + "/{child}/terminate", terminate, methods=["POST"]),
        Route(base + "/{child}/restart", restart, methods=["POST"]),
        Route(base + "/{child}", delete, methods=["DELETE"]),
    ]


def children_paths(
    name_schema: dict[str, Any], error_response: dict[str, Any], guarded: dict[str, Any]
) -> dict[str, Any]:
    """The OpenAPI paths of the routes above (merged into the node's spec)."""
    obj = {"content": {"application/json": {"schema": {"type": "object"}}}}
    sup = {"name": "sup", "in": "path", "required": True, "schema": name_schema, "example": "root"}
    # the example names no real child: a generated run must not stop the node's agents
    child = {"name": "child", "in": "path", "required": True, "schema": name_schema}
    child["example"] = "no-such-child"
    refused = {"400": error_response, "403": error_response, "404": error_response}
    refused["409"] = error_response

    def op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"summary": summary, **extra, "responses": {**guarded, **responses}}

    ok = {"description": "done", **obj}
    return {
        "/v1/supervisors": {
            "get": op("Every supervisor of the tree, with its children", {"200": ok})
        },
        "/v1/supervisors/{sup}/children": {
            "get": op(
                "which_children and count_children of one supervisor",
                {"200": ok, "400": error_response, "404": error_response},
                parameters=[sup],
            )
        },
        "/v1/supervisors/{sup}/children/{child}/terminate": {
            "post": op(
                "terminate_child: stop it; not restarted (a temporary child's spec goes)",
                {"200": ok, **refused},
                parameters=[sup, child],
            )
        },
        "/v1/supervisors/{sup}/children/{child}/restart": {
            "post": op(
                "restart_child: start a kept spec that is not running",
                {"200": ok, **refused, "502": error_response},
                parameters=[sup, child],
            )
        },
        "/v1/supervisors/{sup}/children/{child}": {
            "delete": op(
                "delete_child: remove a spec that is not running",
                {"200": ok, **refused},
                parameters=[sup, child],
            )
        },
    }
