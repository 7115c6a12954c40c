"""Live: the global log as server-sent events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query

from app.api.deps import BroadcasterDep, MetricsDep, SettingsDep, StoreDep, log_filter
from app.api.params import CategoryFilter, StreamFilter, TagFilter, TypeFilter
from app.api.responses import problems
from app.api.sse import SSE_RESPONSE, LiveResponse, live_response, start_position
from app.domain.names import MAX_POSITION

router = APIRouter(tags=["live"])


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
        Query(ge=0, le=MAX_POSITION, description="start after this position; default: the head"),
    ] = None,
    stream: StreamFilter = None,
    category: CategoryFilter = None,
    type: TypeFilter = None,
    tag: TagFilter = None,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", description="resume after this position (wins over after)"),
    ] = None,
) -> LiveResponse:
    """Follow the global log live, from a position or from the head."""
    where = log_filter(stream, category, type, settings.max_name_length, tag)
    start = start_position(last_event_id, after)
    if start is None:
        start = await store.head()
    return live_response(broadcaster, settings, metrics, start, where)
