"""Response bodies built from stored JSON text, without parsing it again."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.responses import Response

from app.api.encoding import dumps_text
from app.domain.types import RecordedEvent


def timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_json(e: RecordedEvent) -> str:
    return (
        f'{{"id":"{e.id}","stream_id":{dumps_text(e.stream_id)},"type":{dumps_text(e.type)},'
        f'"version":{e.version},"position":{e.position},"data":{e.data},'
        f'"metadata":{e.metadata},"recorded_at":"{timestamp(e.recorded_at)}"}}'
    )


def events_json(events: list[RecordedEvent]) -> str:
    return "[" + ",".join(event_json(e) for e in events) + "]"


def json_response(
    body: str | bytes, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    content = body.encode() if isinstance(body, str) else body
    return Response(content, status, headers=headers, media_type="application/json")


IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
