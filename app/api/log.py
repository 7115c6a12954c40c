"""The global log: every event in position order, with filters and long polling."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from app.api.deps import BroadcasterDep, SettingsDep, StoreDep, log_filter, page_size
from app.api.models import BackwardLogPageOut, LogPageOut, RecordedEventOut
from app.api.pages import Wait, log_page_response, log_query, read_page
from app.api.params import (
    CategoryFilter,
    Direction,
    Limit,
    Position,
    StreamFilter,
    TagFilter,
    TypeFilter,
)
from app.api.problems import ValidationProblemError
from app.api.render import IMMUTABLE, NO_CACHE, events_json, json_response
from app.api.responses import problems
from app.domain.names import MAX_POSITION
from app.domain.types import LogFilter
from app.live.wire import event_json

router = APIRouter(tags=["log"])


@router.get(
    "/events",
    operation_id="readLog",
    response_model=LogPageOut | BackwardLogPageOut,
    responses=problems(),
)
async def read_log(
    broadcaster: BroadcasterDep,
    store: StoreDep,
    settings: SettingsDep,
    after: Position = 0,
    limit: Limit = 100,
    stream: StreamFilter = None,
    category: CategoryFilter = None,
    type: TypeFilter = None,
    tag: TagFilter = None,
    wait: Wait = 0,
    direction: Direction = Direction.forward,
    before: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_POSITION,
            description="backward reads: events below this position (default: past the head)",
        ),
    ] = None,
) -> Response:
    """Read the global log after a position, optionally filtered; or, with
    `direction=backward`, the newest events below `before`, newest first (so
    `?direction=backward&limit=1&category=Order` is the newest event of a category)."""
    limit = page_size(limit, settings)
    where = log_filter(stream, category, type, settings.max_name_length, tag)
    if direction is Direction.backward:
        return await _read_backward(store, before, limit, where, after, wait)
    if before is not None:
        raise ValidationProblemError(
            [{"parameter": "before", "detail": "applies to direction=backward"}]
        )
    page = await read_page(broadcaster, after, limit, where, wait)
    next_url = "/events?" + log_query(page.next_after, limit, where)
    full_and_settled = len(page.events) == limit and page.events[-1].position < page.head
    return log_page_response(
        broadcaster, page, next_url, IMMUTABLE if full_and_settled else NO_CACHE
    )


async def _read_backward(
    store: StoreDep, before: int | None, limit: int, where: LogFilter, after: int, wait: float
) -> Response:
    problems_found = [
        {"parameter": name, "detail": "applies to forward reads"}
        for name, given in (("after", after), ("wait", wait))
        if given
    ]
    if problems_found:
        raise ValidationProblemError(problems_found)
    page = await store.read_log_backward(before, limit, where)
    query = log_query(0, limit, where).replace("after=0&", "", 1)
    next_url = f"/events?direction=backward&before={page.next_after}&{query}"
    body = (
        f'{{"events":{events_json(page.events)},"head":{page.head},'
        f'"next_before":{page.next_after},"next":"{next_url}"}}'
    )
    headers = {"Link": f'<{next_url}>; rel="next"', "Cache-Control": NO_CACHE}
    return json_response(body, headers=headers)


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
