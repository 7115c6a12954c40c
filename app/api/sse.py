"""Server-sent event responses, shared by the live routes of the log and of
subscriptions.

`LiveResponse` keeps sse-starlette's wire behaviour (pings, a send timeout for clients
that stop reading, the end of every stream when the server exits, disconnect
detection) at a fraction of its per-connection cost: the stream runs in the request's
own task, pings included (app.live.tail), instead of a task group of four tasks and a
cancel scope around every send. Under `evstore serve` the server's protocol calls the
response when its connection is lost (the ASGI extension ON_DISCONNECT), so an idle
subscriber is one task; under other servers one helper task per connection waits for
the disconnect message. One task per process ends the streams whose send has waited
too long, and all of them when the server exits.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Any
from weakref import WeakKeyDictionary

from prometheus_client import Gauge
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Message, Receive, Scope, Send

from app.api.metrics import Metrics
from app.api.problems import ValidationProblemError
from app.domain.names import MAX_POSITION
from app.domain.types import LogFilter
from app.live.broadcaster import Broadcaster
from app.live.tail import TailOptions, tail
from app.settings import Settings

log = logging.getLogger("evstore.live")

# ASGI extension set by app.server: `scope["extensions"][ON_DISCONNECT]["watch"](f)`
# has `f()` called once if the connection is lost (`watch(None)` unregisters it).
ON_DISCONNECT = "evstore.on_disconnect"

SHUTDOWN_GRACE_SECONDS = 2.0  # the tails end cleanly well within uvicorn's 5 s


class LiveStreams:
    """The open live responses of one process (one broadcaster), and the one task that
    watches them: every quarter of the send timeout it ends those whose send has waited
    longer than that (a sweep over all, not a timer per stream), and when the server
    begins to exit it closes the broadcaster, so every tail returns and its stream ends
    cleanly, and cancels what is left after a grace period."""

    def __init__(self, broadcaster: Broadcaster, gauge: Gauge, send_timeout: float) -> None:
        self.broadcaster = broadcaster
        self.gauge = gauge
        self.send_timeout = send_timeout
        self.open: set[LiveResponse] = set()
        self._watcher: asyncio.Task[None] | None = None

    def add(self, response: LiveResponse) -> None:
        self.open.add(response)
        self.gauge.inc()
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch(), name="evstore-live-streams")

    def discard(self, response: LiveResponse) -> None:
        self.open.discard(response)
        self.gauge.dec()
        if not self.open and self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    async def _watch(self) -> None:
        exiting = asyncio.ensure_future(EventSourceResponse._listen_for_exit_signal())
        try:
            while not exiting.done():
                await asyncio.wait([exiting], timeout=self.send_timeout / 4)
                stalled_since = time.monotonic() - self.send_timeout
                for response in list(self.open):
                    if response.sending_since() <= stalled_since:
                        response.end("stalled")
        finally:
            exiting.cancel()
        self.broadcaster.close()
        await asyncio.sleep(SHUTDOWN_GRACE_SECONDS)  # `discard` cancels us once all end
        for response in list(self.open):
            response.end("shutdown")


_streams: WeakKeyDictionary[Broadcaster, LiveStreams] = WeakKeyDictionary()


def live_streams(broadcaster: Broadcaster, metrics: Metrics, settings: Settings) -> LiveStreams:
    streams = _streams.get(broadcaster)
    if streams is None:
        gauge, timeout = metrics.live_subscribers, settings.live_send_timeout_seconds
        streams = _streams[broadcaster] = LiveStreams(broadcaster, gauge, timeout)
    return streams


class LiveResponse(EventSourceResponse):
    """An SSE response of `chunks` (encoded messages), registered with `streams` while
    it runs. HEAD (and a response without `streams`) takes sse-starlette's own path."""

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        streams: LiveStreams | None = None,
        status_code: int = 200,  # FastAPI reads the documented status from this default
        **options: Any,
    ) -> None:
        super().__init__(chunks, status_code=status_code, **options)
        self._chunks = chunks
        self._streams = streams
        self._task: asyncio.Task[Any] | None = None
        self._streaming = False
        self._ended: str | None = None  # why we cancelled the stream ourselves
        self._sending = 0  # sends in progress, and since when the first of them waits
        self._since = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streams = self._streams
        if streams is None or scope["type"] != "http" or scope["method"].upper() == "HEAD":
            await super().__call__(scope, receive, send)
            return
        task = self._task = asyncio.current_task()
        assert task is not None
        streams.add(self)
        # evstore's own server tells us of a lost connection; elsewhere a helper task
        # waits for the disconnect message.
        watch = (scope.get("extensions") or {}).get(ON_DISCONNECT, {}).get("watch")
        helper: asyncio.Task[None] | None = None
        if watch is not None:
            watch(self._disconnected)
        else:
            helper = asyncio.create_task(self._watch(receive))
        self._streaming = True
        try:
            await self._stream(send)
        except asyncio.CancelledError:
            if self._ended is None or task.uncancel() > 0:
                raise  # not ours: the server cancels the request
        finally:
            self._streaming = self.active = False
            if helper is not None:
                helper.cancel()
            if watch is not None:
                watch(None)
            streams.discard(self)
        if self._ended == "stalled":
            log.warning("dropped a live subscriber that read nothing for %.1fs", self.send_timeout)
        if self.background is not None:
            await self.background()

    def end(self, reason: str) -> None:
        """Stop the stream now: the client is gone, stalled, or the server exits."""
        if self._streaming and self._ended is None and self._task is not None:
            self._ended = reason
            self._task.cancel()

    async def _stream(self, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code}
        await self._send(send, {**start, "headers": self.raw_headers})
        try:
            async for chunk in self._chunks:
                await self._send(
                    send, {"type": "http.response.body", "body": chunk, "more_body": True}
                )
        finally:
            # Cancelled in a send, the tail is suspended at a yield: close it here so
            # its cleanup runs now, not whenever it is collected.
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        self.active = False  # no ping after the end
        await self._send(send, {"type": "http.response.body", "body": b"", "more_body": False})

    async def _send(self, send: Send, message: Message) -> None:
        # LiveStreams ends a stream whose send waits too long (the client stopped
        # reading): cheaper than a timer around every send, as most never wait at all.
        self._sending += 1
        if self._sending == 1:
            self._since = time.monotonic()
        try:
            await send(message)
        finally:
            self._sending -= 1

    def sending_since(self) -> float:
        """When the send in progress began (math.inf: none is)."""
        return self._since if self._sending else math.inf

    def _disconnected(self) -> None:
        self.end("disconnect")

    async def _watch(self, receive: Receive) -> None:
        """The helper task where the server has no ON_DISCONNECT: the disconnect."""
        while True:  # until the stream ends and cancels it
            message = await receive()
            if message["type"] == "http.disconnect":
                self.end("disconnect")
                return


# One message of the stream, as OpenAPI 3.2 describes text/event-stream items (an
# absent `event:` field reads as "message").
SSE_MESSAGE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["message", "caught-up", "checkpoint"]},
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "a position"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": "one line of JSON: the recorded event, or {position[, head]}",
        },
        "retry": {"type": "integer", "minimum": 0},
    },
}
SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "An endless text/event-stream: events (id = position), then "
        "`caught-up` once, `checkpoint` for filtered subscriptions, `: ping` comments",
        "content": {"text/event-stream": {"schema": SSE_MESSAGE}},
    }
}


def start_position(last_event_id: str | None, after: int | None) -> int | None:
    if last_event_id is None:
        return after
    text = last_event_id.strip()
    # The length first: int() of thousands of digits is slow, or refused (ValueError).
    digits = len(str(MAX_POSITION))
    if not (text.isascii() and text.isdigit() and len(text) <= digits) or int(text) > MAX_POSITION:
        raise ValidationProblemError(
            [{"parameter": "Last-Event-ID", "detail": "must be a position: 0 to 2^63-1"}]
        )
    return int(text)


def live_response(
    broadcaster: Broadcaster, settings: Settings, metrics: Metrics, start: int, where: LogFilter
) -> LiveResponse:
    """The SSE response following the log after `start` (the global log and
    subscriptions)."""
    options = TailOptions(
        page_size=settings.live_page_size,
        retry_ms=settings.live_retry_ms,
        checkpoint_seconds=settings.live_checkpoint_seconds,
        ping_seconds=settings.live_keepalive_seconds,
    )
    return LiveResponse(
        tail(broadcaster, start, where, options),
        live_streams(broadcaster, metrics, settings),
        ping=settings.live_keepalive_seconds,
        ping_message_factory=lambda: ServerSentEvent(comment="ping", sep="\n"),
        send_timeout=settings.live_send_timeout_seconds,
        sep="\n",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
