"""One middleware for what every request reports: its id, its access line, its metrics.

Request ids: the client's X-Request-ID when it is a sane token, else a new one; it is
echoed on the response and set for every log line the request causes. Access lines
carry method, route template, status and duration. Metrics count requests and time
them by route template (not path: bounded labels). This was two middlewares; each
layer wraps every request and every message it sends, which on small requests is a
measurable share of the server's CPU, so it is one.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.log_format import access, request_id
from app.api.metrics import Metrics, route_template

_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class ObserveMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
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
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            seconds = time.perf_counter() - started
            self._report(scope, rid, status, seconds)
            request_id.reset(token)

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
