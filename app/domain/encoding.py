"""JSON text for the wire: compact UTF-8, never NaN; recorded events rendered from
their stored JSON text without parsing it again."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from app.domain.types import RecordedEvent


def dumps_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dumps(value: Any) -> bytes:
    return dumps_text(value).encode()


def timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with a Z suffix and microseconds."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_json(e: RecordedEvent, stamp: str | None = None) -> str:
    """One line of JSON (stored JSON text never holds a raw newline). Stream ids and
    types are quoted as they are: the only write path admits just characters that JSON
    needs no escape for (A-Z a-z 0-9 - _ . : @ ~ =). `stamp` is recorded_at already
    formatted, when the caller has it."""
    return (
        f'{{"id":"{e.id}","stream_id":"{e.stream_id}","type":"{e.type}",'
        f'"version":{e.version},"position":{e.position},"data":{e.data},'
        f'"metadata":{e.metadata},"recorded_at":"{stamp or timestamp(e.recorded_at)}"}}'
    )


def events_json(events: list[RecordedEvent]) -> str:
    """A JSON array of events; the events of one append share one timestamp, so each
    distinct timestamp is formatted once."""
    stamps: dict[datetime, str] = {}
    parts = []
    for e in events:
        stamp = stamps.get(e.recorded_at)
        if stamp is None:
            stamp = stamps[e.recorded_at] = timestamp(e.recorded_at)
        parts.append(event_json(e, stamp))
    return "[" + ",".join(parts) + "]"
