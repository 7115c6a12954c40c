"""Plain factories for test data."""

from __future__ import annotations

import json
import uuid
from typing import Any

from app.domain.types import NewEvent


def new_event(
    type: str = "Happened", data: Any = None, metadata: Any = None, id: str | None = None
) -> NewEvent:
    return NewEvent(
        id=id or str(uuid.uuid4()),
        type=type,
        data=json.dumps({"n": 1} if data is None else data),
        metadata=json.dumps(metadata or {}),
    )


def event_body(
    type: str = "Happened", data: Any = None, id: str | None = None, metadata: Any = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": id or str(uuid.uuid4()),
        "type": type,
        "data": {"n": 1} if data is None else data,
    }
    if metadata is not None:
        body["metadata"] = metadata
    return body


def append_body(*events: dict[str, Any]) -> dict[str, Any]:
    return {"events": list(events) or [event_body()]}
