"""Snapshots: the newest client-supplied state of a stream."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api.body import INLINE_PARSE_BYTES, json_problems, parse_json, read_body, require_json
from app.api.deps import SettingsDep, SnapshotStoreDep
from app.api.models import SnapshotOut
from app.api.params import StreamId
from app.api.problems import Problems, ValidationProblemError
from app.api.render import json_response
from app.api.responses import problems
from app.domain.errors import LimitExceededError
from app.domain.names import MAX_VERSION
from app.domain.types import Snapshot
from app.live.wire import dumps_text, timestamp
from app.settings import Settings

router = APIRouter(tags=["snapshots"])

SNAPSHOT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SnapshotIn"}}},
    }
}


def snapshot_json(s: Snapshot) -> str:
    return (
        f'{{"stream_id":{dumps_text(s.stream_id)},"version":{s.version},"data":{s.data},'
        f'"metadata":{s.metadata},"created_at":"{timestamp(s.created_at)}"}}'
    )


def parse_snapshot(raw: bytes, settings: Settings) -> tuple[int, str, str]:
    """(version, data, metadata) of a PUT body, with the same JSON rules as events."""
    body: Any = parse_json(raw)
    if not isinstance(body, dict):
        raise ValidationProblemError([{"pointer": "", "detail": "the body must be an object"}])
    found = Problems(
        [
            {"pointer": f"/{k}", "detail": "unknown member"}
            for k in body
            if k not in ("version", "data", "metadata")
        ]
    )
    version = body.get("version")
    if type(version) is not int or not 1 <= version <= MAX_VERSION:
        found.append({"pointer": "/version", "detail": "required: a stream version >= 1"})
    if "data" not in body:
        found.append({"pointer": "/data", "detail": "required"})
    else:
        found += json_problems(body["data"], "/data", settings.max_json_depth)
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        found.append({"pointer": "/metadata", "detail": "must be an object"})
    else:
        found += json_problems(metadata, "/metadata", settings.max_json_depth)
    if found:
        raise ValidationProblemError(found)
    data_text, metadata_text = dumps_text(body["data"]), dumps_text(metadata)
    size = len(data_text.encode()) + len(metadata_text.encode())
    if size > settings.max_event_bytes:
        raise LimitExceededError(
            "max_event_bytes",
            settings.max_event_bytes,
            f"data and metadata take {size} bytes; at most {settings.max_event_bytes}",
        )
    assert isinstance(version, int)
    return version, data_text, metadata_text


@router.put(
    "/streams/{stream_id}/snapshot",
    operation_id="putSnapshot",
    response_model=SnapshotOut,
    responses=problems(400, 409, 413, 415),
    openapi_extra=SNAPSHOT_BODY,
)
async def put_snapshot(
    request: Request, stream_id: StreamId, snapshots: SnapshotStoreDep, settings: SettingsDep
) -> Response:
    """Store the state of a stream as of a version (only the newest is kept)."""
    require_json(request)
    raw = await read_body(request, settings.max_body_bytes)
    if len(raw) <= INLINE_PARSE_BYTES:
        version, data, metadata = parse_snapshot(raw, settings)
    else:  # off the event loop, as appends are
        version, data, metadata = await asyncio.to_thread(parse_snapshot, raw, settings)
    stored = await snapshots.put(stream_id, version, data, metadata)
    return json_response(snapshot_json(stored))


@router.get(
    "/streams/{stream_id}/snapshot",
    operation_id="getSnapshot",
    response_model=SnapshotOut,
    responses=problems(404),
)
async def get_snapshot(stream_id: StreamId, snapshots: SnapshotStoreDep) -> Response:
    """Read the newest snapshot of a stream."""
    return json_response(snapshot_json(await snapshots.get(stream_id)))


@router.delete(
    "/streams/{stream_id}/snapshot",
    operation_id="deleteSnapshot",
    status_code=204,
    response_class=Response,
    responses=problems(),
)
async def delete_snapshot(stream_id: StreamId, snapshots: SnapshotStoreDep) -> Response:
    """Delete the stream's snapshot (204 whether or not there was one)."""
    await snapshots.delete(stream_id)
    return Response(status_code=204)
