"""Live: the global log as server-sent events."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.types import Receive, Scope, Send

from app.api.deps import BroadcasterDep, MetricsDep, SettingsDep, StoreDep, log_filter
from app.api.metrics import Metrics
from app.api.params import MAX_INT64, CategoryFilter, StreamFilter, TypeFilter
from app.api.problems import ValidationProblemError
from app.api.responses import problems
from app.domain.types import LogFilter
from app.live.broadcaster import Broadcaster
from app.live.tail import TailOptions, tail
from app.settings import Settings

router = APIRouter(tags=["live"])
log = logging.getLogger("evstore.live")


class LiveResponse(EventSourceResponse):
    """An SSE response that reports a client which stopped reading in one line."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            log.warning(
                "dropped a live subscriber that read nothing for %.1fs", self.send_timeout or 0
            )


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
    if not text.isascii() or not text.isdigit() or int(text) > MAX_INT64:
        raise ValidationProblemError(
            [{"parameter": "Last-Event-ID", "detail": "must be a position: 0 to 2^63-1"}]
        )
    return int(text)


@router.get(
    "/events/live",
    operation_id="subscribeLive",
    response_class=LiveResponse,
    responses={**SSE_RESPONSE, **problems()},
)
async def subscribe_live(
    store: StoreDep,
    broadcaster: BroadcasterDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    after: Annotated[
        int | None,
        Query(ge=0, le=MAX_INT64, description="start after this position; default: the head"),
    ] = None,
    stream: StreamFilter = None,
    category: CategoryFilter = None,
    type: TypeFilter = None,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", description="resume after this position (wins over after)"),
    ] = None,
) -> LiveResponse:
    """Follow the global log live, from a position or from the head."""
    where = log_filter(stream, category, type, settings.max_name_length)
    start = start_position(last_event_id, after)
    if start is None:
        start = await store.head()
    return live_response(broadcaster, settings, metrics, start, where)


def live_response(
    broadcaster: Broadcaster, settings: Settings, metrics: Metrics, start: int, where: LogFilter
) -> LiveResponse:
    """The SSE response following the log after `start` (the global log and
    subscriptions)."""
    options = TailOptions(
        page_size=settings.live_page_size,
        retry_ms=settings.live_retry_ms,
        checkpoint_seconds=settings.live_checkpoint_seconds,
        idle_wait_seconds=max(settings.live_checkpoint_seconds, 0.05),
    )
    shutdown = anyio.Event()  # set by sse-starlette when the server begins to exit

    async def close_on_shutdown() -> None:
        await shutdown.wait()
        broadcaster.close()

    async def stream_messages() -> AsyncIterator[bytes]:
        metrics.live_subscribers.inc()
        watcher = asyncio.create_task(close_on_shutdown())
        try:
            async for chunk in tail(broadcaster, start, where, options):
                yield chunk
        finally:
            watcher.cancel()
            metrics.live_subscribers.dec()

    return LiveResponse(
        stream_messages(),
        ping=settings.live_keepalive_seconds,
        ping_message_factory=lambda: ServerSentEvent(comment="ping", sep="\n"),
        send_timeout=settings.live_send_timeout_seconds,
        sep="\n",
        shutdown_event=shutdown,
        shutdown_grace_period=2,  # the tails end cleanly well within uvicorn's 5 s
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
