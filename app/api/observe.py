"""One middleware for what every request reports: its id, its access line, its metrics.

Request ids: the client's X-Request-ID when it is a sane token, else a new one; it is
echoed on the response and set for every log line the request causes. Access lines
carry method, route template, status and duration. Metrics count requests and time
them by route template (not path: bounded labels). This was two middlewares; each
layer wraps every request and every message it sends, which on small requests is a
measurable share of the server's CPU, so it is one.

It also bounds what a client that stops reading costs: a body above `SEND_CHUNK` is
sent in chunks of that size, each within `send_timeout` (the transport holds one
chunk, not the whole body, and `send` waits while the client does not read). A
client that reads nothing of a chunk for that long is dropped, and its connection
closed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.log_format import access, request_id
from app.api.metrics import Metrics, route_template

_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
SEND_CHUNK = 256 * 1024
log = logging.getLogger("evstore.http")


class ClientStalledError(Exception):
    """The client read nothing of a response for the send timeout."""


def _caused_by_stall(error: BaseException | None) -> bool:
    while error is not None:
        if isinstance(error, ClientStalledError):
            return True
        error = error.__cause__ or error.__context__
    return False


class ObserveMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, send_timeout: float = 30.0) -> None:
        self.app = app
        self.metrics = metrics
        self.send_timeout = send_timeout
        # prometheus_client's labels() takes a lock and builds a key on every call
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid = value.decode("latin-1")
        if not _VALID_ID.fullmatch(rid):
            rid = os.urandom(16).hex()
        echoed = (b"x-request-id", rid.encode())
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            elif len(message.get("body", b"")) > SEND_CHUNK:
                await self._send_chunked(send, message)
                return
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except Exception as error:
            # Starlette may wrap it ("response already started"): look down the chain.
            if not _caused_by_stall(error):
                raise
            # uvicorn closes the connection of a response left incomplete.
            log.warning("dropped a client that read nothing for %.1fs", self.send_timeout)
        finally:
            seconds = time.perf_counter() - started
            self._report(scope, rid, status, seconds)
            request_id.reset(token)

    async def _send_chunked(self, send: Send, message: Message) -> None:
        body: bytes = message["body"]
        more: bool = message.get("more_body", False)
        for start in range(0, len(body), SEND_CHUNK):
            end = start + SEND_CHUNK
            chunk = {
                "type": "http.response.body",
                "body": body[start:end],
                "more_body": more or end < len(body),
            }
            try:
                async with asyncio.timeout(self.send_timeout):
                    await send(chunk)
            except TimeoutError:
                raise ClientStalledError from None

    def _report(self, scope: Scope, rid: str, status: int, seconds: float) -> None:
        method: str = scope["method"]
        route = route_template(scope)
        counter = self._counters.get((method, route, status))
        if counter is None:
            counter = self.metrics.requests.labels(method, route, str(status))
            self._counters[(method, route, status)] = counter
        counter.inc()
        timer = self._timers.get((method, route))
        if timer is None:
            timer = self._timers[(method, route)] = self.metrics.latency.labels(method, route)
        timer.observe(seconds)
        if access.isEnabledFor(logging.INFO):
            fields = {
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
            }
            access.info(
                "%s %s %s", method, route, status, extra={"request_id": rid, "fields": fields}
            )
