"""`POST /events` (contract section 11): events for several streams in one atomic
append, with expectations per stream and a condition (the Dynamic Consistency
Boundary). The write is the writer's one transaction, as for `POST /streams/{id}`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api.body import parse_append_across, read_body, require_json
from app.api.deps import SettingsDep, StoreDep
from app.api.models import AcrossReceipt
from app.api.render import json_response
from app.api.responses import problems
from app.domain.types import MultiAppendResult

router = APIRouter(tags=["streams"])


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
    events, expect, condition = parse_append_across(raw, settings)
    result = await store.append_across(events, expect, condition)
    headers = {"Location": f"/events/{result.events[0].position}"}
    return json_response(across_receipt_json(result), 200 if result.replayed else 201, headers)
