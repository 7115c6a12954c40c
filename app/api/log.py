"""The global log: every event in position order, with filters and long polling."""

from __future__ import annotations

import asyncio
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from app.api.deps import BroadcasterDep, SettingsDep, StoreDep, log_filter, page_size
from app.api.models import LogPageOut, RecordedEventOut
from app.api.params import (
    MAX_INT64,
    CategoryFilter,
    Limit,
    Position,
    StreamFilter,
    TypeFilter,
)
from app.api.render import IMMUTABLE, NO_CACHE, events_json, json_response
from app.api.responses import problems
from app.domain.encoding import event_json
from app.domain.types import LogFilter, LogPage
from app.live.broadcaster import Broadcaster

router = APIRouter(tags=["log"])

Wait = Annotated[
    float,
    Query(
        ge=0,
        le=60,
        description="long poll: seconds to hold an empty answer open waiting for a match",
    ),
]


async def read_page(
    broadcaster: Broadcaster, after: int, limit: int, where: LogFilter, wait: float
) -> LogPage:
    """A page of the log; with `wait`, hold until something matches or time is up.
    Waiting holds no database connection: the broadcaster wakes us."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    page = await broadcaster.read_fresh(after, limit, where)  # read-your-writes
    while not page.events and (left := deadline - loop.time()) > 0:
        if not await broadcaster.wait_beyond(page.next_after, left):
            break
        page = await broadcaster.read(page.next_after, limit, where)
    return page


def log_query(after: int, limit: int, where: LogFilter) -> str:
    query: dict[str, object] = {"after": after, "limit": limit}
    for name, values in (
        ("stream", where.streams),
        ("category", where.categories),
        ("type", where.types),
    ):
        if values:
            query[name] = list(values)
    return urlencode(query, doseq=True)


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
    wait: Wait = 0,
) -> Response:
    """Read the global log after a position, optionally filtered."""
    limit = page_size(limit, settings)
    where = log_filter(stream, category, type, settings.max_name_length)
    page = await read_page(broadcaster, after, limit, where, wait)
    next_url = "/events?" + log_query(page.next_after, limit, where)
    full_and_settled = len(page.events) == limit and page.events[-1].position < page.head
    return log_page_response(page, next_url, IMMUTABLE if full_and_settled else NO_CACHE)


def log_page_response(page: LogPage, next_url: str, cache_control: str) -> Response:
    """The body and headers of a log page (the global log and subscriptions)."""
    headers = {"Link": f'<{next_url}>; rel="next"', "Cache-Control": cache_control}
    body = (
        f'{{"events":{events_json(page.events)},"head":{page.head},'
        f'"next_after":{page.next_after},"next":"{next_url}"}}'
    )
    return json_response(body, headers=headers)


@router.get(
    "/events/{position}",
    operation_id="readLogEvent",
    response_model=RecordedEventOut,
    responses=problems(404),
)
async def read_log_event(
    position: Annotated[int, Path(ge=1, le=MAX_INT64, description="global position")],
    store: StoreDep,
) -> Response:
    """Read one event by its global position."""
    found = await store.read_event_at(position)
    return json_response(event_json(found), headers={"Cache-Control": IMMUTABLE})
