"""`POST /events` (contract section 11): events for several streams in one atomic
append, with expectations per stream and a condition (the Dynamic Consistency
Boundary). The write is the writer's one transaction, as for `POST /streams/{id}`."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from app.api.body import parse_append_across, read_body, require_json
from app.api.deps import SettingsDep, StoreDep, page_size
from app.api.models import AcrossReceipt, TrackerListOut, TrackerOut
from app.api.params import Limit
from app.api.render import json_response
from app.api.responses import problems
from app.domain.names import MAX_NAME_LENGTH, NAME_PATTERN
from app.domain.types import MultiAppendResult, Tracker
from app.live.wire import dumps, timestamp

TrackerName = Annotated[
    str, Path(max_length=MAX_NAME_LENGTH, pattern=NAME_PATTERN, description="a tracker's name")
]

router = APIRouter(tags=["streams"])
trackers_router = APIRouter(tags=["trackers"])


def across_receipt_json(result: MultiAppendResult) -> str:
    # Stream ids admit only characters JSON needs no escape for; ids are UUIDs.
    events = ",".join(
        f'{{"id":"{e.id}","stream_id":"{e.stream_id}","version":{e.version},'
        f'"position":{e.position}}}'
        for e in result.events
    )
    streams = ",".join(f'{{"stream_id":"{s}","version":{v}}}' for s, v in result.streams)
    return f'{{"head":{result.head},"events":[{events}],"streams":[{streams}]}}'


@router.post(
    "/events",
    operation_id="appendAcrossStreams",
    status_code=201,
    response_model=AcrossReceipt,
    responses={
        200: {
            "description": "A retry of a stored append: its original receipt",
            "model": AcrossReceipt,
        },
        **problems(400, 409, 413, 415),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/AcrossRequest"}}
            },
        }
    },
)
async def append_across_streams(
    request: Request, store: StoreDep, settings: SettingsDep
) -> Response:
    """Append events to several streams atomically, if each expected stream is at its
    expected version and no event matching the condition's query was committed after
    `after`. 409 `append-condition-failed` names what did not hold; nothing is written."""
    require_json(request)
    raw = await read_body(request, settings.max_body_bytes)
    events, expect, condition, track = parse_append_across(raw, settings)
    result = await store.append_across(events, expect, condition, track)
    if result.events:
        location = f"/events/{result.events[0].position}"
    else:  # only the tracker moved
        location = f"/trackers/{quote(track.name if track else '')}"
    headers = {"Location": location}
    return json_response(across_receipt_json(result), 200 if result.replayed else 201, headers)


def tracker_json(t: Tracker) -> dict[str, Any]:
    return {"name": t.name, "position": t.position, "updated_at": timestamp(t.updated_at)}


@trackers_router.get(
    "/trackers/{name}",
    operation_id="getTracker",
    response_model=TrackerOut,
    responses=problems(404),
)
async def get_tracker(name: TrackerName, store: StoreDep) -> Response:
    """Where a tracker stands: the upstream position its last append processed."""
    return json_response(dumps(tracker_json(await store.tracker(name))))


@trackers_router.get(
    "/trackers",
    operation_id="listTrackers",
    response_model=TrackerListOut,
    responses=problems(),
)
async def list_trackers(
    store: StoreDep,
    settings: SettingsDep,
    prefix: Annotated[str | None, Query(max_length=200, description="name prefix")] = None,
    after: Annotated[str | None, Query(max_length=200, description="a name: list after it")] = None,
    limit: Limit = 100,
) -> Response:
    """Trackers in name order."""
    limit = page_size(limit, settings)
    found = await store.list_trackers(prefix, after, limit)
    next_url = None
    if len(found) == limit:
        query = {"after": found[-1].name, "limit": limit, **({"prefix": prefix} if prefix else {})}
        next_url = "/trackers?" + urlencode(query)
    return json_response(dumps({"trackers": [tracker_json(t) for t in found], "next": next_url}))
