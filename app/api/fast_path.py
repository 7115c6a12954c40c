"""The append route without FastAPI's per-request machinery.

`POST /streams/{stream_id}` is the hottest request of an event store, and a profile
of single-event appends put FastAPI's routing, dependency solving and exception
wrapping at about a fifth of the server's CPU: more than the append itself. This
middleware recognises the route by its path, sets `scope["route"]` to the FastAPI
route (so metrics and access lines name it as usual), and calls the same endpoint
function, `app.api.streams.append_to_stream`, with the same arguments FastAPI would
pass; errors are answered by the app's own exception handlers. Anything it does not
recognise as a well-formed append (another method or path, a stream id FastAPI
would refuse) goes to FastAPI unchanged, so every answer, error and the OpenAPI
document stay as they were.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api import streams
from app.api.params import NAME_PATTERN
from app.api.problems import INTERNAL, render
from app.api.streams import append_to_stream

log = logging.getLogger("evstore.api")
PREFIX = "/streams/"
NAME = re.compile(NAME_PATTERN)
MAX_STREAM_ID = 200


class FastAppend:
    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api
        self.route = next(
            r
            for r in streams.router.routes
            if isinstance(r, APIRoute)
            and r.path == PREFIX + "{stream_id}"
            and r.methods is not None
            and "POST" in r.methods
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            stream_id = path[len(PREFIX) :]
            if (
                path.startswith(PREFIX)
                and len(stream_id) <= MAX_STREAM_ID
                and NAME.fullmatch(stream_id)
                and not scope.get("root_path")
            ):
                scope["route"] = self.route
                scope["app"] = self.api
                response = await self._append(Request(scope, receive), stream_id)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _append(self, request: Request, stream_id: str) -> Response:
        state = self.api.state
        headers = request.headers
        try:
            return await append_to_stream(
                request,
                stream_id,
                state.store,
                state.settings,
                state.metrics,
                headers.get("if-match"),
                headers.get("if-none-match"),
            )
        except Exception as error:  # answered as FastAPI's exception middleware would
            return await self._handle(request, error)

    async def _handle(self, request: Request, error: Exception) -> Response:
        handlers: dict[Any, Any] = self.api.exception_handlers
        for cls in type(error).__mro__:
            handler = handlers.get(cls)
            if handler is not None and cls is not Exception:
                response: Response = await handler(request, error)
                return response
        log.error("unexpected error in an append", exc_info=error)
        return render(error, INTERNAL, "an unexpected error occurred")
