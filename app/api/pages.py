"""Log pages, shared by the log and subscription routes: the long-polling page reader,
the next-page query and the page response."""

from __future__ import annotations

import asyncio
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Query
from starlette.responses import Response

from app.api.render import events_json, json_response
from app.domain.types import LogFilter, LogPage
from app.live.broadcaster import Broadcaster

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
        cursor, found = await broadcaster.wait_for(page.next_after, where, left)
        page = await broadcaster.read(cursor, limit, where)
        if not found:
            break
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


def log_page_response(page: LogPage, next_url: str, cache_control: str) -> Response:
    """The body and headers of a log page (the global log and subscriptions)."""
    headers = {"Link": f'<{next_url}>; rel="next"', "Cache-Control": cache_control}
    body = (
        f'{{"events":{events_json(page.events)},"head":{page.head},'
        f'"next_after":{page.next_after},"next":"{next_url}"}}'
    )
    return json_response(body, headers=headers)
