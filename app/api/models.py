"""Wire models. Responses are rendered by hand (stored JSON is never re-parsed); these
models document them in the OpenAPI document and type the few parsed bodies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.domain.names import (
    MAX_NAME_LENGTH,
    MAX_POSITION,
    MAX_TAGS,
    MAX_VERSION,
    NAME_PATTERN,
    TAG_PATTERN,
    TYPE_PATTERN,
)

# Request models document the bodies that the parsers (app/api/body.py and the routers'
# parse_* functions) accept: unknown members are refused, and numbers are not taken
# from strings or floats. tests/api/test_bodies.py keeps each model and its parser equal.
STRICT = ConfigDict(extra="forbid", strict=True)
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
Name = Annotated[str, Field(max_length=MAX_NAME_LENGTH, pattern=NAME_PATTERN)]
EventType = Annotated[str, Field(max_length=MAX_NAME_LENGTH, pattern=TYPE_PATTERN)]
Tag = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=TAG_PATTERN)]


def _distinct(tags: list[str]) -> list[str]:
    if len(set(tags)) != len(tags):
        raise ValueError("the tags of one event are distinct")
    return tags


Tags = Annotated[
    list[Tag],
    Field(
        max_length=MAX_TAGS,
        description="distinct tags (by convention key:value) that queries and "
        "conditional appends select on; returned in the order sent",
        json_schema_extra={"uniqueItems": True},
    ),
    AfterValidator(_distinct),
]


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
    tags: Tags = Field(default_factory=list)


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
    tags: list[str] = Field(..., description="the event's tags in the order sent; [] when none")
    recorded_at: str = Field(..., description="RFC 3339, UTC, with a Z suffix")


class QueryItemIn(BaseModel):
    model_config = STRICT

    types: list[EventType] = Field(default_factory=list, max_length=MAX_TAGS)
    tags: list[Tag] = Field(
        default_factory=list, max_length=MAX_TAGS, description="every one of them (AND)"
    )
    streams: list[Name] = Field(default_factory=list, max_length=MAX_TAGS)
    categories: list[Name] = Field(default_factory=list, max_length=MAX_TAGS)


class QueryIn(BaseModel):
    """An event matches the query when it matches any item; it matches an item when its
    type is one of `types`, it carries every tag of `tags`, its stream is one of
    `streams` and its category one of `categories` (each only when given). No item:
    every event."""

    model_config = STRICT

    items: list[QueryItemIn] = Field(..., max_length=16)


class EventsQueryIn(BaseModel):
    model_config = STRICT
    model_config["json_schema_extra"] = {
        "examples": [
            {
                "query": {"items": [{"types": ["StudentSubscribed"], "tags": ["course:c1"]}]},
                "after": 0,
                "limit": 100,
            }
        ]
    }

    query: QueryIn
    after: int = Field(0, ge=0, le=MAX_POSITION, description="exclusive: events after it")
    limit: int = Field(100, ge=1, le=1000)
    wait: float = Field(
        0, ge=0, le=60, description="long poll: seconds to wait while nothing matches"
    )


class AcrossEventIn(EventIn):
    stream_id: Name = Field(..., description="the stream this event is appended to")


class ExpectIn(BaseModel):
    model_config = STRICT

    stream_id: Name
    version: Literal["exists"] | Annotated[int, Field(ge=0, le=MAX_VERSION)] = Field(
        ..., description='the stream\'s version (0: it has no events) or "exists"'
    )


class ConditionIn(BaseModel):
    model_config = STRICT

    fail_if_events_match: QueryIn
    after: int | None = Field(
        None,
        ge=0,
        le=MAX_POSITION,
        description="exclusive; absent: any matching event fails the append. "
        "Normally the head of the read the decision was made on",
    )


class TrackIn(BaseModel):
    model_config = STRICT

    name: Name = Field(..., description="the tracker: one per upstream log and consumer")
    position: int = Field(
        ..., ge=0, le=MAX_POSITION, description="the upstream position this append results from"
    )


class TrackerOut(BaseModel):
    name: str
    position: int
    updated_at: str


class TrackerListOut(BaseModel):
    trackers: list[TrackerOut]
    next: str | None


class AcrossRequest(BaseModel):
    model_config = STRICT
    model_config["json_schema_extra"] = {
        "examples": [
            {
                "events": [
                    {
                        "stream_id": "Course-c1",
                        "type": "StudentSubscribed",
                        "data": {"student": "s9"},
                        "tags": ["course:c1", "student:s9"],
                    },
                    {"stream_id": "Student-s9", "type": "CourseJoined", "data": {"course": "c1"}},
                ],
                "expect": [{"stream_id": "Student-s9", "version": 3}],
                "condition": {
                    "fail_if_events_match": {
                        "items": [{"types": ["StudentSubscribed"], "tags": ["course:c1"]}]
                    },
                    "after": 1050,
                },
            }
        ]
    }

    events: list[AcrossEventIn] = Field(
        ..., max_length=1000, description="at least one, unless `track` is given"
    )
    expect: list[ExpectIn] = Field(
        default_factory=list, max_length=1000, description="at most one per stream"
    )
    condition: ConditionIn | None = None
    track: TrackIn | None = Field(
        None, description="fail unless the tracker stands below `position`; then move it there"
    )


class AcrossEventOut(BaseModel):
    id: str
    stream_id: str
    version: int
    position: int


class AcrossStreamOut(BaseModel):
    stream_id: str
    version: int = Field(..., description="the stream's version after the append")


class AcrossReceipt(BaseModel):
    head: int = Field(..., description="the last new position")
    events: list[AcrossEventOut]
    streams: list[AcrossStreamOut]


class QueryPageOut(BaseModel):
    events: list[RecordedEventOut]
    head: int
    next_after: int = Field(..., description="where the next read of the query starts")
    next: None = Field(None, description="always null: send the query with next_after")


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


class BackwardLogPageOut(BaseModel):
    events: list[RecordedEventOut] = Field(..., description="newest first")
    head: int = Field(..., description="the highest committed position")
    next_before: int = Field(..., description="pass as `before` to read on (older events)")
    next: str = Field(..., description="relative URL of the next, older page")


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
    """The four lists, or, for a query of several items, `query` alone."""

    stream: list[str] = Field(default_factory=list)
    category: list[str] = Field(default_factory=list)
    type: list[str] = Field(default_factory=list)
    tag: list[str] = Field(default_factory=list)
    query: QueryIn | None = None


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
    tag: list[Tag] = Field(
        default_factory=list, max_length=MAX_TAGS, description="tags the event carries (AND)"
    )
    query: QueryIn | None = Field(
        None, description="instead of the four lists: a query (section 11)"
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
