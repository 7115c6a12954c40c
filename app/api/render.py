"""Response bodies built from stored JSON text, without parsing it again."""

from __future__ import annotations

from starlette.responses import Response

from app.live.wire import events_json

__all__ = ["IMMUTABLE", "NO_CACHE", "events_json", "json_response"]


def json_response(
    body: str | bytes, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    content = body.encode() if isinstance(body, str) else body
    return Response(content, status, headers=headers, media_type="application/json")


IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
