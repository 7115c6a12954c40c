"""The global log: every event in position order, with filters and long polling."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.responses import Response

from app.api.deps import BroadcasterDep, SettingsDep, StoreDep, log_filter, page_size
from app.api.models import LogPageOut, RecordedEventOut
from app.api.pages import Wait, log_page_response, log_query, read_page
from app.api.params import (
    CategoryFilter,
    Limit,
    Position,
    StreamFilter,
    TagFilter,
    TypeFilter,
)
from app.api.render import IMMUTABLE, NO_CACHE, json_response
from app.api.responses import problems
from app.domain.names import MAX_POSITION
from app.live.wire import event_json

router = APIRouter(tags=["log"])


@router.get(
    "/events",
    operation_id="readLog",
    response_model=LogPageOut,
    responses=problems(),
)
async def read_log(
    broadcaster: BroadcasterDep,
    settings: SettingsDep,
    after: Position = 0,
    limit: Limit = 100,
    stream: StreamFilter = None,
    category: CategoryFilter = None,
    type: TypeFilter = None,
    tag: TagFilter = None,
    wait: Wait = 0,
) -> Response:
    """Read the global log after a position, optionally filtered."""
    limit = page_size(limit, settings)
    where = log_filter(stream, category, type, settings.max_name_length, tag)
    page = await read_page(broadcaster, after, limit, where, wait)
    next_url = "/events?" + log_query(page.next_after, limit, where)
    full_and_settled = len(page.events) == limit and page.events[-1].position < page.head
    return log_page_response(
        broadcaster, page, next_url, IMMUTABLE if full_and_settled else NO_CACHE
    )


@router.get(
    "/events/{position}",
    operation_id="readLogEvent",
    response_model=RecordedEventOut,
    responses=problems(404),
)
async def read_log_event(
    position: Annotated[int, Path(ge=1, le=MAX_POSITION, description="global position")],
    store: StoreDep,
) -> Response:
    """Read one event by its global position."""
    found = await store.read_event_at(position)
    return json_response(event_json(found), headers={"Cache-Control": IMMUTABLE})
