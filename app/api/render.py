"""Response bodies built from stored JSON text, without parsing it again."""

from __future__ import annotations

from starlette.responses import Response

from app.domain.encoding import event_json
from app.domain.types import RecordedEvent


def events_json(events: list[RecordedEvent]) -> str:
    return "[" + ",".join(event_json(e) for e in events) + "]"


def json_response(
    body: str | bytes, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    content = body.encode() if isinstance(body, str) else body
    return Response(content, status, headers=headers, media_type="application/json")


IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
