"""Log pages, shared by the log and subscription routes: the long-polling page reader,
the next-page query and the page response."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Annotated
from urllib.parse import urlencode
from weakref import WeakKeyDictionary

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
        ("tag", where.tags),
    ):
        if values:
            query[name] = list(values)
    return urlencode(query, doseq=True)


# Bodies at least this big are rendered once for every request that answers the same
# page (the long polls one append wakes); the last SHARED_BODIES of them are kept.
SHARED_BODY_BYTES = 64 * 1024
SHARED_BODIES = 4


class PageBodies:
    """The newest big page bodies of one process, by what determines them: the events'
    range (a page holds every match between its first and last position), the head
    and the next link (which names the filter, the limit and the route). A thousand
    long polls woken by one big event share one body instead of rendering a copy
    each."""

    def __init__(self) -> None:
        self._bodies: OrderedDict[tuple[int, int, int, int, int, str | None], bytes] = OrderedDict()

    def body(self, page: LogPage, next_url: str | None) -> bytes:
        events = page.events
        if not events or sum(e.size for e in events) < SHARED_BODY_BYTES:
            return _render(page, next_url)
        key = (
            events[0].position,
            events[-1].position,
            len(events),
            page.head,
            page.next_after,
            next_url,
        )
        found = self._bodies.get(key)
        if found is None:
            found = self._bodies[key] = _render(page, next_url)
            while len(self._bodies) > SHARED_BODIES:
                self._bodies.popitem(last=False)
        return found


_bodies: WeakKeyDictionary[Broadcaster, PageBodies] = WeakKeyDictionary()


def _render(page: LogPage, next_url: str | None) -> bytes:
    link = "null" if next_url is None else f'"{next_url}"'
    return (
        f'{{"events":{events_json(page.events)},"head":{page.head},'
        f'"next_after":{page.next_after},"next":{link}}}'
    ).encode()


def log_page_response(
    broadcaster: Broadcaster, page: LogPage, next_url: str | None, cache_control: str
) -> Response:
    """The body and headers of a log page (the global log, subscriptions, queries: a
    query's page has no next link, `next_after` says where to go on)."""
    headers = {"Cache-Control": cache_control}
    if next_url is not None:
        headers["Link"] = f'<{next_url}>; rel="next"'

    bodies = _bodies.get(broadcaster)
    if bodies is None:
        bodies = _bodies[broadcaster] = PageBodies()
    return json_response(bodies.body(page, next_url), headers=headers)
