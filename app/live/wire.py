"""The SSE wire format of evstore's live streams, encoded once as bytes."""

from __future__ import annotations

from app.domain.encoding import event_json
from app.domain.types import RecordedEvent


def message(event: str | None, position: int, data: str) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}id: {position}\ndata: {data}\n\n".encode()


def event_message(e: RecordedEvent) -> bytes:
    """An event: no `event:` field (EventSource.onmessage gets it), id = position."""
    return message(None, e.position, event_json(e))
