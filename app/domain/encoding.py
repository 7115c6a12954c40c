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


def event_json(e: RecordedEvent) -> str:
    """One line of JSON (stored JSON text never holds a raw newline)."""
    return (
        f'{{"id":"{e.id}","stream_id":{dumps_text(e.stream_id)},"type":{dumps_text(e.type)},'
        f'"version":{e.version},"position":{e.position},"data":{e.data},'
        f'"metadata":{e.metadata},"recorded_at":"{timestamp(e.recorded_at)}"}}'
    )
