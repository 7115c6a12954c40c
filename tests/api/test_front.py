"""The front (app/api/front.py): one middleware stack that appends and every other
request enter, with what is registered by add_middleware in front of the fast path."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.fast_path import FastAppend
from app.api.limits import BodyLimit
from app.api.observe import ObserveMiddleware
from app.main import create_app
from app.settings import Settings
from tests.api import append_ok


class Stamp:
    """A middleware that marks every response, standing in for authentication or CORS."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"x-stamp", b"1")]
            await send(message)

        await self.app(scope, receive, stamped)


def chain(app: ASGIApp) -> list[type]:
    """The classes of the stack from the outside in, down to FastAPI's own."""
    found: list[type] = []
    while not isinstance(app, ServerErrorMiddleware | ExceptionMiddleware):
        found.append(type(app))
        app = app.app  # type: ignore[attr-defined]
    return [*found, type(app)]


@pytest.fixture(params=[True, False], ids=["fast-path", "through-fastapi"])
async def stamped_app(settings: Settings, request: pytest.FixtureRequest) -> AsyncIterator[FastAPI]:
    application = create_app(settings, fast_append=request.param)
    application.add_middleware(Stamp)
    async with application.router.lifespan_context(application):
        yield application


async def test_registered_middleware_sees_appends_and_reads(stamped_app: FastAPI) -> None:
    transport = httpx.ASGITransport(stamped_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://evstore") as client:
        await append_ok(client, "Order-1", {"type": "Placed", "data": {}})
        response = await client.post("/streams/Order-1", json={"events": []})  # a 422
        read = await client.get("/streams/Order-1")
        missing = await client.get("/nowhere")
    for answer in (response, read, missing):
        assert answer.headers.get("x-stamp") == "1", answer.request.url
    assert response.status_code == 422 and missing.status_code == 404


async def test_the_stack_is_observe_limit_registered_fast_path_then_fastapi(
    settings: Settings,
) -> None:
    application = create_app(settings)
    application.add_middleware(Stamp)
    stack = application.build_middleware_stack()
    assert chain(stack) == [
        ObserveMiddleware,
        BodyLimit,
        Stamp,
        FastAppend,
        ServerErrorMiddleware,
    ]
    without = create_app(settings, fast_append=False).build_middleware_stack()
    assert chain(without) == [ObserveMiddleware, BodyLimit, ServerErrorMiddleware]


async def test_a_refused_stream_id_goes_on_to_fastapi(client: httpx.AsyncClient) -> None:
    # FastAPI's own 422 for the path parameter, not the fast path's answer
    response = await client.post("/streams/-bad", json={"events": [{"type": "A", "data": 1}]})
    assert response.status_code == 422
    assert response.json()["errors"][0]["parameter"] == "stream_id"
