"""An ASGI guard that answers 413 from the declared Content-Length, before any body."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.body import body_too_large
from app.api.problems import render


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                    error = body_too_large(self.max_bytes)
                    response = render(error)
                    response.headers["Connection"] = "close"
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
