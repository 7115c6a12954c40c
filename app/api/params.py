"""Declared parameters shared by the routers (they become the OpenAPI parameters)."""

from __future__ import annotations

import enum
from typing import Annotated

from fastapi import Header, Path, Query

from app.domain.names import (
    MAX_NAME_LENGTH,
    MAX_POSITION,
    NAME_CHARACTERS,
    NAME_PATTERN,
)

StreamId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        pattern=NAME_PATTERN,
        description=f"1 to {MAX_NAME_LENGTH} characters from {NAME_CHARACTERS}, starting with "
        "a letter or digit",
        examples=["Order-42"],
    ),
]
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description='Append: "N" the stream must be at version N (a list matches any '
        'member); "0" or * with If-None-Match: the stream must be new; * it must exist.',
    ),
]
IfNoneMatch = Annotated[
    str | None,
    Header(
        alias="If-None-Match",
        description='Append: * means the stream must have no events. Read: "N" gives 304 '
        "when the stream is still at version N.",
    ),
]
Limit = Annotated[
    int,
    Query(
        ge=1,
        le=1000,
        description="page size, 1 to 1000; a page of events also ends early once its data "
        "and metadata pass max_page_bytes (4 MiB by default; always one event at least), "
        "and `next` goes on from there",
    ),
]
Position = Annotated[int, Query(ge=0, le=MAX_POSITION, description="a global position")]
StreamFilter = Annotated[
    list[str] | None,
    Query(max_length=100, description="exact stream id; repeat for several (OR)"),
]
CategoryFilter = Annotated[
    list[str] | None,
    Query(max_length=100, description="category (stream id before the first -); repeatable"),
]
TypeFilter = Annotated[
    list[str] | None, Query(max_length=100, description="event type; repeatable (OR)")
]
TagFilter = Annotated[
    list[str] | None,
    Query(max_length=32, description="a tag the event must carry; repeat for several (AND)"),
]


class Direction(enum.StrEnum):
    forward = "forward"
    backward = "backward"
