"""The HTTP server's own limits: uvicorn's httptools protocol with a cap on the header
block and a deadline for it.

uvicorn enforces `h11_max_incomplete_event_size` only with h11; with httptools (which
`evstore serve` uses for speed) a client may send headers without end, and the parser
buffers all of them. Nor does uvicorn time out a request whose headers never finish.
This protocol answers such requests itself, before the app sees them:

- more than `max_header_bytes` before the blank line that ends the headers: `431` and
  the connection is closed;
- headers not complete within `header_timeout_seconds` of the request's first byte (or
  of the connection's opening): `408` and the connection is closed;
- a body not complete within `body_timeout_seconds` of the end of its headers: `408`
  (unless the app has begun its answer) and the connection is closed. The timer is
  armed only when a read ends with the body still incomplete, so a request that
  arrives whole (nearly every append) costs no timer.

Beyond `max_concurrent_connections` connections or requests uvicorn answers 503; its
answer is replaced here by the registry's `unavailable` problem with Retry-After. The
cap has a default below the process's file-descriptor limit (`connection_limit`), so a
flood of connections is answered 503 instead of leaving the server unable to accept.

A live response (app.api.sse) registers through the scope's ON_DISCONNECT extension
to be told when its connection is lost, instead of a task of its own waiting for the
disconnect message.

It also sends what one turn of the event loop writes to a connection in one system
call (`CoalescingTransport`): uvicorn writes a response's head and its body
separately, and for the small answers of an event store (a 201 receipt) the second
send() was a measurable part of the server's CPU.
"""

from __future__ import annotations

import asyncio
import functools
import resource
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from app.api.problems import (
    UNAVAILABLE,
    HeadersTooLargeError,
    RequestTimeoutError,
    problem_body,
    render_bytes,
)
from app.api.sse import ON_DISCONNECT
from app.domain.errors import StoreUnavailableError
from app.settings import Settings

HEADERS_END = b"\r\n\r\n"
# File descriptors a process keeps for what is not a client: its database connections
# (counted apart), logs, the listener, SQLite's files, the notifier.
RESERVED_DESCRIPTORS = 128


def connection_limit(settings: Settings) -> int:
    """The cap on connections and requests of one process: the setting, else what the
    file-descriptor limit leaves after the database pool and a reserve. The soft limit
    is first raised to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and hard != resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if settings.max_concurrent_connections is not None:
        return settings.max_concurrent_connections
    pool = settings.pool_size + settings.pool_max_overflow
    return max(16, soft - pool - RESERVED_DESCRIPTORS)


async def _over_the_limit(scope: Any, receive: Any, send: Any) -> None:
    """uvicorn's answer beyond limit_concurrency, as the registry's 503 problem."""
    body = problem_body(
        StoreUnavailableError("the server is at its connection limit"),
        replace(UNAVAILABLE, detail="the server is at its connection limit; retry later"),
    )
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(_settings().retry_after_seconds).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


# uvicorn's httptools protocol looks the answer up by this module-level name.
httptools_impl.service_unavailable = _over_the_limit  # type: ignore[attr-defined]


@functools.cache
def _settings() -> Settings:
    return Settings()  # read once per worker process


WRITE_THROUGH_BYTES = 64 * 1024


class CoalescingTransport:
    """A transport whose writes within one turn of the event loop go out together, at
    the end of that turn; everything else is the wrapped transport's."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if len(data) >= WRITE_THROUGH_BYTES:
            # A big write goes out now, so that the transport's flow control (pausing
            # the sender while the client does not read) sees it at once.
            self._flush()
            if not self._transport.is_closing():
                self._transport.write(data)
            return
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self._flush)
        else:
            self._pending.append(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """httptools with a bounded, timed header block (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.max_header_bytes = config.h11_max_incomplete_event_size or 16 * 1024
        settings = _settings()
        self.header_timeout = settings.header_timeout_seconds
        self.body_timeout = settings.body_timeout_seconds
        self.in_headers = True  # between a request's first byte and its blank line
        self.header_bytes = 0
        self.tail = b""  # the last bytes seen, for a blank line split across reads
        self.header_deadline: asyncio.TimerHandle | None = None
        self.in_body = False  # between a request's blank line and its last body byte
        self.body_deadline: asyncio.TimerHandle | None = None
        self.on_lost: Callable[[], None] | None = None  # a live response's (ON_DISCONNECT)
        self.disconnect_extension: dict[object, object] = {"watch": self._watch_lost}

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        coalescing = CoalescingTransport(transport, self.loop)
        super().connection_made(coalescing)  # type: ignore[arg-type]
        self._start_deadline()  # a connection that never sends a byte is timed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        self._stop_body_deadline()
        super().connection_lost(exc)
        lost, self.on_lost = self.on_lost, None
        if lost is not None:
            lost()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {ON_DISCONNECT: self.disconnect_extension}

    def _watch_lost(self, callback: Callable[[], None] | None) -> None:
        self.on_lost = callback

    def data_received(self, data: bytes) -> None:
        if self.in_headers:
            self._start_deadline()
            self.header_bytes += self._header_part(data)
            if self.header_bytes > self.max_header_bytes:
                detail = (
                    f"the request line and headers take more than {self.max_header_bytes} bytes"
                )
                self._refuse(HeadersTooLargeError(detail))
                return
        super().data_received(data)
        if self.in_body and self.body_deadline is None and not self.transport.is_closing():
            self.body_deadline = self.loop.call_later(self.body_timeout, self._body_too_slow)

    def _header_part(self, data: bytes) -> int:
        """How many bytes of `data` belong to the header block (the rest is body)."""
        keep = len(HEADERS_END) - 1
        before, self.tail = self.tail, (self.tail + data[-keep:])[-keep:]
        joint = (before + data[:keep]).find(HEADERS_END)
        if joint >= 0:  # the blank line straddles the previous read and this one
            return joint + len(HEADERS_END) - len(before)
        end = data.find(HEADERS_END)
        return len(data) if end < 0 else end + len(HEADERS_END)

    def on_headers_complete(self) -> None:
        self.in_headers = False
        self.in_body = True
        self._stop_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.in_body = False
        self._stop_body_deadline()
        super().on_message_complete()
        # The next request on this connection starts its own count and clock.
        self.in_headers, self.header_bytes, self.tail = True, 0, b""

    def _start_deadline(self) -> None:
        if self.header_deadline is None and self.transport is not None:
            self.header_deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _stop_deadline(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    def _too_slow(self) -> None:
        self.header_deadline = None
        if self.in_headers and not self.transport.is_closing():
            detail = f"the request headers did not arrive within {self.header_timeout:g} s"
            self._refuse(RequestTimeoutError(detail))

    def _stop_body_deadline(self) -> None:
        if self.body_deadline is not None:
            self.body_deadline.cancel()
            self.body_deadline = None

    def _body_too_slow(self) -> None:
        self.body_deadline = None
        if not self.in_body or self.transport.is_closing():
            return
        detail = f"the request body did not arrive within {self.body_timeout:g} s"
        if getattr(getattr(self, "cycle", None), "response_started", False):
            self.logger.warning("closed a connection: %s", detail)
            self.transport.close()  # the answer has begun: it cannot become a 408
            return
        self._refuse(RequestTimeoutError(detail))

    def _refuse(self, error: Exception) -> None:
        self.logger.warning("refused a request: %s", error)
        self._stop_deadline()
        self._stop_body_deadline()
        self.in_headers = self.in_body = False
        self.transport.write(render_bytes(error))
        self.transport.close()
