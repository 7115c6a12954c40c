"""The append route without FastAPI's per-request machinery.

`POST /streams/{stream_id}` is the hottest request of an event store, and a profile
of single-event appends put FastAPI's routing, dependency solving and exception
wrapping at about a fifth of the server's CPU: more than the append itself. This
layer of the front (app/api/front.py) matches the request against FastAPI's own
append route (its compiled path pattern, so the path rule is the route's), checks the stream
id with the contract's rule (app/domain/names.py, which the route's declared
parameter uses too), sets the route in the scope (so metrics and access lines name
it), and calls the same endpoint function,
`app.api.streams.append_to_stream`, with the arguments FastAPI would pass. Errors are
answered by `app.api.problems.respond`, as FastAPI's exception handlers answer them.
Anything else, a stream id FastAPI would refuse included, goes on to FastAPI, so
every answer is the same on both paths (tests/api/test_append.py runs on both).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api import streams
from app.api.problems import INTERNAL, kind_of, respond
from app.api.streams import append_to_stream
from app.domain.names import is_name

APPEND_OPERATION = "appendToStream"


def append_route() -> APIRoute:
    """FastAPI's route of the append operation, as the streams router declares it."""
    return next(
        r
        for r in streams.router.routes
        if isinstance(r, APIRoute) and r.operation_id == APPEND_OPERATION
    )


class FastAppend:
    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api
        self.route = append_route()
        # The route's own compiled path pattern: what `route.matches` runs, without the
        # child scope it builds (a measurable share of a small append's CPU).
        self.path = self.route.path_regex

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Behind a root_path (a proxy's prefix) FastAPI's routing decides, as it knows it.
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            found = self.path.match(scope["path"])
            if found is not None and is_name(stream_id := found.group("stream_id")):
                scope["route"] = self.route  # as FastAPI's router: metrics name the route
                await self._append(scope, receive, send, stream_id)
                return
        await self.app(scope, receive, send)

    async def _append(self, scope: Scope, receive: Receive, send: Send, stream_id: str) -> None:
        request = Request(scope, receive)
        state = self.api.state
        headers = request.headers
        try:
            response = await append_to_stream(
                request,
                stream_id,
                state.store,
                state.settings,
                state.metrics,
                headers.get("if-match"),
                headers.get("if-none-match"),
            )
        except Exception as error:
            await (await respond(request, error))(scope, receive, send)
            if kind_of(error) is INTERNAL:
                raise  # for the server to log, as FastAPI's ServerErrorMiddleware does
            return
        await response(scope, receive, send)
