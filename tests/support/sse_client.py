"""A strict SSE reader for tests: parses the wire format field by field."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Message:
    event: str | None = None
    id: str | None = None
    data: list[str] = field(default_factory=list)
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def json(self) -> Any:
        assert len(self.data) == 1, f"data must be one line: {self.data}"
        return json.loads(self.data[0])

    @property
    def position(self) -> int:
        assert self.id is not None
        return int(self.id)


async def messages(response: httpx.Response) -> AsyncIterator[Message]:
    """Every message and comment block of an open text/event-stream response."""
    current = Message()
    async for line in response.aiter_lines():
        if line == "":
            if current.data or current.event or current.comments or current.retry is not None:
                yield current
            current = Message()
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "":
            current.comments.append(value)
        elif name == "event":
            current.event = value
        elif name == "id":
            current.id = value
        elif name == "data":
            current.data.append(value)
        elif name == "retry":
            current.retry = int(value)
        else:
            raise AssertionError(f"unexpected SSE field {line!r}")
