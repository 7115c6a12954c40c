"""Wire models. Responses are rendered by hand (stored JSON is never re-parsed); these
models document them in the OpenAPI document and type the few parsed bodies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.domain.names import (
    MAX_NAME_LENGTH,
    MAX_POSITION,
    MAX_VERSION,
    NAME_PATTERN,
    TYPE_PATTERN,
)

# Request models document the bodies that the parsers (app/api/body.py and the routers'
# parse_* functions) accept: unknown members are refused, and numbers are not taken
# from strings or floats. tests/api/test_bodies.py keeps each model and its parser equal.
STRICT = ConfigDict(extra="forbid", strict=True)
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
Name = Annotated[str, Field(max_length=MAX_NAME_LENGTH, pattern=NAME_PATTERN)]
EventType = Annotated[str, Field(max_length=MAX_NAME_LENGTH, pattern=TYPE_PATTERN)]


def _optional_uuid(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # an explicit null id is a 422, not the default
    schema["format"] = "uuid"


class EventIn(BaseModel):
    model_config = STRICT

    # The default stands for "absent" only: it is not validated, and null is refused.
    id: str = Field(
        None,  # type: ignore[assignment]
        pattern=UUID_PATTERN,
        description="UUID; send one so that retries are safe. Assigned when absent.",
        json_schema_extra=_optional_uuid,
    )
    type: EventType
    data: Any = Field(..., description="any JSON value, stored as sent")
    metadata: dict[str, Any] = Field(default_factory=dict, description="a JSON object")


class AppendRequest(BaseModel):
    model_config = STRICT

    events: list[EventIn] = Field(..., min_length=1, max_length=1000)


class AppendedEventOut(BaseModel):
    id: str
    version: int
    position: int


class AppendReceipt(BaseModel):
    stream_id: str
    version: int = Field(..., description="the stream's version after the append")
    events: list[AppendedEventOut]


class RecordedEventOut(BaseModel):
    id: str
    stream_id: str
    type: str
    version: int
    position: int
    data: Any
    metadata: dict[str, Any]
    recorded_at: str = Field(..., description="RFC 3339, UTC, with a Z suffix")


class StreamPageOut(BaseModel):
    stream_id: str
    version: int = Field(..., description="the stream's current version")
    events: list[RecordedEventOut]
    next: str | None = Field(..., description="relative URL of the next page, or null")


class LogPageOut(BaseModel):
    events: list[RecordedEventOut]
    head: int = Field(..., description="the highest committed position")
    next_after: int = Field(..., description="pass as `after` to read on")
    next: str = Field(..., description="relative URL of the next page")


class StreamInfoOut(BaseModel):
    stream_id: str
    category: str
    version: int
    created_at: str
    updated_at: str


class StreamListOut(BaseModel):
    streams: list[StreamInfoOut]
    next: str | None


class HealthOut(BaseModel):
    status: str = Field(..., description="ok or unavailable")
    database: str
    head: int | None
    writer: str | None = Field(
        None, description='"stopped" when the append writer cannot run (absent otherwise)'
    )


class SnapshotIn(BaseModel):
    model_config = STRICT

    version: int = Field(
        ..., ge=1, le=MAX_VERSION, description="the stream version the state is as of"
    )
    data: Any = Field(..., description="any JSON value")
    metadata: dict[str, Any] = Field(default_factory=dict)


class SnapshotOut(BaseModel):
    stream_id: str
    version: int
    data: Any
    metadata: dict[str, Any]
    created_at: str


class FilterOut(BaseModel):
    stream: list[str]
    category: list[str]
    type: list[str]


class SubscriptionIn(BaseModel):
    model_config = STRICT

    stream: list[Name] = Field(
        default_factory=list, max_length=100, description="exact stream ids (OR)"
    )
    category: list[Name] = Field(
        default_factory=list, max_length=100, description="categories (OR)"
    )
    type: list[EventType] = Field(
        default_factory=list, max_length=100, description="event types (OR)"
    )
    start: Literal["beginning", "end"] | Annotated[int, Field(ge=0, le=MAX_POSITION)] = Field(
        "beginning", description='"beginning", "end" (the head now) or a position'
    )


class SubscriptionOut(BaseModel):
    name: str
    filter: FilterOut
    position: int = Field(..., description="the checkpoint: processed up to here")
    head: int
    lag: int = Field(..., description="head - position")
    updated_at: str


class SubscriptionListOut(BaseModel):
    subscriptions: list[SubscriptionOut]
    next: str | None


class CheckpointIn(BaseModel):
    model_config = STRICT

    position: int = Field(
        ..., ge=0, le=MAX_POSITION, description="processed up to here, 0 <= position <= head"
    )


class ErrorItem(BaseModel):
    pointer: str | None = Field(None, description="JSON pointer into the body")
    parameter: str | None = Field(None, description="query, path or header parameter")
    detail: str


class Problem(BaseModel):
    """RFC 9457 problem details; extension members depend on `type`."""

    model_config = {"extra": "allow"}

    type: str = Field(..., examples=["/problems/wrong-expected-version"])
    title: str
    status: int
    detail: str
    errors: list[ErrorItem] | None = Field(
        None, description="validation-error only: the first 100 problems found"
    )
    errors_not_listed: int | None = Field(
        None, description="validation-error: how many problems past the first 100 (absent: none)"
    )
    stream_id: str | None = None
    expected: str | None = Field(None, description="wrong-expected-version: header as sent")
    current_version: int | None = None
    event_ids: list[str] | None = Field(None, description="duplicate-event-id only")
    limit: str | None = Field(None, description="payload-too-large: the limit's setting")
    max: int | None = None
