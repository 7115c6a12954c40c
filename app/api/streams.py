"""Streams: append, read a stream, read one event, list streams."""

from __future__ import annotations

import asyncio
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from app.api import preconditions as pre
from app.api.body import INLINE_PARSE_BYTES, parse_append, read_body, require_json
from app.api.deps import MetricsDep, SettingsDep, StoreDep, log_filter, page_size
from app.api.models import AppendReceipt, RecordedEventOut, StreamListOut, StreamPageOut
from app.api.params import Direction, IfMatch, IfNoneMatch, Limit, StreamId
from app.api.render import IMMUTABLE, NO_CACHE, events_json, json_response
from app.api.responses import problems
from app.domain.errors import DuplicateEventIdError, WrongExpectedVersionError
from app.domain.names import MAX_NAME_LENGTH, MAX_VERSION, NAME_PATTERN
from app.domain.types import AppendResult
from app.live.wire import dumps, dumps_text, event_json, timestamp

router = APIRouter(tags=["streams"])

APPEND_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AppendRequest"}}},
    }
}


def stream_path(stream_id: str) -> str:
    return "/streams/" + quote(stream_id, safe=":@~=")


@router.post(
    "/streams/{stream_id}",
    operation_id="appendToStream",
    status_code=201,
    response_model=AppendReceipt,
    responses={
        200: {
            "description": "An idempotent retry: the original receipt, nothing written",
            "model": AppendReceipt,
        },
        **problems(400, 409, 412, 413, 415),
    },
    openapi_extra=APPEND_BODY,
)
async def append_to_stream(
    request: Request,
    stream_id: StreamId,
    store: StoreDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """Append events atomically, with an optional expected version."""
    require_json(request)
    expected = pre.expected_version(if_match, if_none_match)
    raw = await read_body(request, settings.max_body_bytes)
    if len(raw) <= INLINE_PARSE_BYTES:
        new = parse_append(raw, settings)
    else:  # the strict parser may take seconds over a large body: off the event loop
        new = await asyncio.to_thread(parse_append, raw, settings)
    try:
        result = await store.append(stream_id, new, expected)
    except (WrongExpectedVersionError, DuplicateEventIdError) as e:
        reason = CONFLICTS[type(e)]
        metrics.appends.labels(reason).inc()
        metrics.conflicts.labels(reason).inc()
        raise
    if result.replayed:
        metrics.appends.labels("replayed").inc()
    else:
        metrics.appends.labels("created").inc()
        metrics.events.inc(len(result.events))
        metrics.head.set(result.events[-1].position)
    headers = {
        "ETag": pre.etag(result.version),
        "Location": f"{stream_path(stream_id)}/{result.events[0].version}",
    }
    return json_response(receipt_json(result), 200 if result.replayed else 201, headers)


CONFLICTS = {
    WrongExpectedVersionError: "wrong_expected_version",
    DuplicateEventIdError: "duplicate_event_id",
}


def receipt_json(result: AppendResult) -> str:
    # Stream ids admit only characters JSON needs no escape for; ids are UUIDs.
    events = ",".join(
        [f'{{"id":"{e.id}","version":{e.version},"position":{e.position}}}' for e in result.events]
    )
    return f'{{"stream_id":"{result.stream_id}","version":{result.version},"events":[{events}]}}'


async def _stream_page(
    store: StoreDep,
    stream_id: str,
    start: int | None,
    limit: int,
    direction: Direction,
    if_none_match: str | None,
) -> tuple[int, dict[str, str], str]:
    if if_none_match is not None:
        version = await store.stream_version(stream_id)
        if version and pre.not_modified(if_none_match, version):
            return 304, {"ETag": pre.etag(version)}, ""
    backward = direction is Direction.backward
    page = await store.read_stream(stream_id, start, limit, backward)
    full = page.cut or len(page.events) == limit
    headers = {"ETag": pre.etag(page.version), "Cache-Control": NO_CACHE}
    next_url = None
    if full:
        newest = page.events[0 if backward else -1].version
        last = page.events[-1].version
        if newest < page.version:
            headers["Cache-Control"] = IMMUTABLE
        following = last - 1 if backward else last + 1
        if 1 <= following <= page.version:
            query = {"from": following, "limit": limit}
            if backward:
                query["direction"] = "backward"  # type: ignore[assignment]
            next_url = f"{stream_path(stream_id)}?{urlencode(query)}"
            headers["Link"] = f'<{next_url}>; rel="next"'
    body = (
        f'{{"stream_id":{dumps_text(stream_id)},"version":{page.version},'
        f'"events":{events_json(page.events)},"next":{dumps_text(next_url)}}}'
    )
    return 200, headers, body


FromVersion = Annotated[
    int | None,
    Query(
        alias="from",
        ge=1,
        le=MAX_VERSION,
        description="first version to return (inclusive); default 1, or the last backward",
    ),
]


@router.get(
    "/streams/{stream_id}",
    operation_id="readStream",
    response_model=StreamPageOut,
    responses={304: {"description": "Not modified"}, **problems(400, 404)},
)
async def read_stream(
    stream_id: StreamId,
    store: StoreDep,
    settings: SettingsDep,
    from_: FromVersion = None,
    limit: Limit = 100,
    direction: Direction = Direction.forward,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """Read a page of a stream, forward or backward."""
    limit = page_size(limit, settings)
    status, headers, body = await _stream_page(
        store, stream_id, from_, limit, direction, if_none_match
    )
    if status == 304:
        return Response(status_code=304, headers=headers)
    return json_response(body, status, headers)


@router.head(
    "/streams/{stream_id}",
    operation_id="headStream",
    responses={
        200: {"description": "The stream exists; ETag is its version"},
        304: {"description": "Not modified"},
        **problems(400, 404),
    },
)
async def head_stream(
    stream_id: StreamId,
    store: StoreDep,
    settings: SettingsDep,
    from_: FromVersion = None,
    limit: Limit = 100,
    direction: Direction = Direction.forward,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """The headers of the same GET, without a body."""
    # The same response as the GET, Content-Length included (RFC 9110 section 9.3.2);
    # the server drops the body of a HEAD response.
    return await read_stream(stream_id, store, settings, from_, limit, direction, if_none_match)


@router.get(
    "/streams/{stream_id}/{version}",
    operation_id="readStreamEvent",
    response_model=RecordedEventOut,
    responses=problems(404),
)
async def read_stream_event(
    stream_id: StreamId,
    version: Annotated[int, Path(ge=1, le=MAX_VERSION, description="the event's version")],
    store: StoreDep,
) -> Response:
    """Read one event of a stream by its version."""
    found = await store.read_event(stream_id, version)
    return json_response(event_json(found), headers={"Cache-Control": IMMUTABLE})


@router.get(
    "/streams",
    operation_id="listStreams",
    response_model=StreamListOut,
    responses=problems(),
)
async def list_streams(
    store: StoreDep,
    settings: SettingsDep,
    prefix: Annotated[
        str | None,
        Query(
            max_length=MAX_NAME_LENGTH,
            pattern=NAME_PATTERN,
            description="stream ids starting with this",
        ),
    ] = None,
    category: Annotated[
        list[str] | None, Query(max_length=100, description="repeatable (OR)")
    ] = None,
    after: Annotated[
        str | None,
        Query(
            max_length=MAX_NAME_LENGTH,
            pattern=NAME_PATTERN,
            description="cursor: the last stream id seen",
        ),
    ] = None,
    limit: Limit = 100,
) -> Response:
    """List streams in stream id order."""
    limit = page_size(limit, settings)
    categories = log_filter(None, category, None, settings.max_name_length).categories
    found = await store.list_streams(prefix, categories, after, limit)
    next_url = None
    if len(found) == limit:
        query: dict[str, object] = {"after": found[-1].stream_id, "limit": limit}
        if prefix:
            query["prefix"] = prefix
        if category:
            query["category"] = category
        next_url = "/streams?" + urlencode(query, doseq=True)
    body = {
        "streams": [
            {
                "stream_id": s.stream_id,
                "category": s.category,
                "version": s.version,
                "created_at": timestamp(s.created_at),
                "updated_at": timestamp(s.updated_at),
            }
            for s in found
        ],
        "next": next_url,
    }
    headers = {"Link": f'<{next_url}>; rel="next"'} if next_url else None
    return json_response(dumps(body), headers=headers)
