"""The wire format: JSON text (compact UTF-8, never NaN), recorded events rendered
from their stored JSON text without parsing it again, and the SSE messages of live
streams, each encoded once as bytes. The API and the live layer both write it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from app.domain.types import RecordedEvent

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dumps_text(value: Any) -> str:
    return keep_floats(_ENCODER.encode(value), value)


def keep_floats(text: str, value: Any) -> str:
    """`text` (the JSON of `value`), unless it writes a float with an exponent such as
    1e+16: PostgreSQL's jsonb stores that as the integer 10000000000000000, and it
    would read back as an integer. Then the float is written 10000000000000000.0,
    which jsonb keeps a number with a fraction. (Every double written with e+ is a
    whole number; "e+" in a string only costs this slower encoding.)"""
    if "e+" not in text:
        return text
    return _exact(value)


def _exact(value: Any) -> str:
    if isinstance(value, float) and abs(value) >= 1e16:
        return f"{int(value)}.0"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_exact(k)}:{_exact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_exact(item) for item in value) + "]"
    return _ENCODER.encode(value)


def dumps(value: Any) -> bytes:
    return dumps_text(value).encode()


def timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with a Z suffix and microseconds."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_json(e: RecordedEvent) -> str:
    """One line of JSON (stored JSON text never holds a raw newline). Stream ids and
    types are quoted as they are: the only write path admits just characters that JSON
    needs no escape for (A-Z a-z 0-9 - _ . : @ ~ =)."""
    return (
        f'{{"id":"{e.id}","stream_id":"{e.stream_id}","type":"{e.type}",'
        f'"version":{e.version},"position":{e.position},"data":{e.data},'
        f'"metadata":{e.metadata},"tags":{e.tags},"recorded_at":"{e.recorded_at}"}}'
    )


def events_json(events: list[RecordedEvent]) -> str:
    """A JSON array of events."""
    return "[" + ",".join([event_json(e) for e in events]) + "]"


def message(event: str | None, position: int, data: str) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}id: {position}\ndata: {data}\n\n".encode()


def event_message(e: RecordedEvent) -> bytes:
    """An event: no `event:` field (EventSource.onmessage gets it), id = position."""
    return message(None, e.position, event_json(e))
