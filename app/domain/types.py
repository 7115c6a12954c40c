"""Plain value types shared by the store, the live layer and the API."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import orjson


class NewEvent(NamedTuple):
    """An event as a client sent it; `data` and `metadata` are already JSON text. (A
    named tuple: a 100-event append builds a hundred of them per request.)"""

    id: str
    type: str
    data: str
    metadata: str
    client_id: bool = True  # False when the server assigned the id
    tags: tuple[str, ...] = ()  # in the order sent, distinct

    @property
    def size(self) -> int:
        """Characters of data and metadata: what batches and pages are bounded by
        (stored with the event as events.size)."""
        return len(self.data) + len(self.metadata)

    @property
    def tags_json(self) -> str:
        """The tags as the JSON text stored in events.tags and returned by reads."""
        return orjson.dumps(self.tags).decode() if self.tags else "[]"


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_event_ids(count: int) -> list[str]:
    """`count` random (version 4) UUIDs as text, from one read of the system's random
    source: a fraction of the cost of str(uuid4()) for each."""
    h = os.urandom(16 * count).hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}-"
        f"{_VARIANT[h[i + 16]]}{h[i + 17 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * count, 32)
    ]


class RecordedEvent(NamedTuple):
    """An event as stored; `data` and `metadata` are JSON text, never parsed again, and
    `recorded_at` is RFC 3339 text (UTC, microseconds, Z). A named tuple, because
    reads build thousands of them per page straight from the driver's row tuples."""

    id: str
    stream_id: str
    type: str
    version: int
    position: int
    data: str
    metadata: str
    recorded_at: str
    tags: str = "[]"  # JSON text: an array of strings, in the order the writer sent them

    @property
    def size(self) -> int:
        """Characters of data and metadata, as stored in events.size."""
        return len(self.data) + len(self.metadata)

    @property
    def tag_set(self) -> frozenset[str]:
        """The event's tags (parsed from `tags` on each call: only filters ask)."""
        if self.tags == "[]":
            return frozenset()
        return frozenset(orjson.loads(self.tags))


class ExpectedKind(enum.Enum):
    ANY = "any"
    NO_STREAM = "no_stream"
    EXISTS = "exists"
    EXACT = "exact"


@dataclass(frozen=True, slots=True)
class ExpectedVersion:
    """What the client expects of the stream's version, from its HTTP precondition.

    `raw` is the header value exactly as sent, echoed back in a 412. For EXACT,
    `versions` holds every strong tag that names a version; it may be empty (only weak
    or non-numeric tags), in which case nothing matches.
    """

    kind: ExpectedKind = ExpectedKind.ANY
    versions: frozenset[int] = field(default_factory=frozenset)
    raw: str = ""

    def matches(self, current_version: int) -> bool:
        if self.kind is ExpectedKind.ANY:
            return True
        if self.kind is ExpectedKind.NO_STREAM:
            return current_version == 0
        if self.kind is ExpectedKind.EXISTS:
            return current_version > 0
        return current_version in self.versions


ANY_VERSION = ExpectedVersion()


class AppendedEvent(NamedTuple):
    id: str
    version: int
    position: int


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The receipt of an append; `replayed` is true for an idempotent retry."""

    stream_id: str
    version: int
    events: tuple[AppendedEvent, ...]
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Condition:
    """Fail the append when an event that `where` matches lies above `after` (None:
    any matching event fails it)."""

    where: LogFilter
    after: int | None = None


@dataclass(frozen=True, slots=True)
class Track:
    """Record that an append results from processing `position` of an upstream log:
    it fails when the tracker `name` stands at `position` or beyond."""

    name: str
    position: int


@dataclass(frozen=True, slots=True)
class Tracker:
    name: str
    position: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Expectation:
    """What an append across streams expects of one stream; `sent` is the value as
    sent (an integer or "exists"), echoed in a 409."""

    stream_id: str
    expected: ExpectedVersion
    sent: int | str


@dataclass(frozen=True, slots=True)
class RecordedReceipt:
    """One event of an append across streams as written."""

    id: str
    stream_id: str
    version: int
    position: int


@dataclass(frozen=True, slots=True)
class MultiAppendResult:
    """The receipt of an append across streams; `streams` holds each written stream's
    version after it, in the order first written; `replayed` for an idempotent retry."""

    head: int
    events: tuple[RecordedReceipt, ...]
    streams: tuple[tuple[str, int], ...]
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class StreamInfo:
    stream_id: str
    category: str
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StreamPage:
    """One page of a stream read; `version` is the stream's version at read time;
    `cut` says the page ended early at the byte budget (more events follow)."""

    stream_id: str
    version: int
    events: list[RecordedEvent]
    cut: bool = False


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Filters of the global log: OR within the stream, category and type lists, AND
    across them; every one of `tags` (AND). One query item of contract section 11.

    A query of several items (OR) is a LogFilter whose `any_of` holds them (and whose
    own lists are empty): it matches an event that one of them matches. A query of no
    item, like a filter of no list, matches every event."""

    streams: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    any_of: tuple[LogFilter, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.streams or self.categories or self.types or self.tags or self.any_of)

    @property
    def items(self) -> tuple[LogFilter, ...]:
        """The query items: `any_of`, or this filter as the one item."""
        return self.any_of or (self,)

    def matches(self, event: RecordedEvent) -> bool:
        if self.any_of:
            return any(item.matches(event) for item in self.any_of)
        return (
            (not self.streams or event.stream_id in self.streams)
            and (not self.categories or category_of(event.stream_id) in self.categories)
            and (not self.types or event.type in self.types)
            and (not self.tags or event.tag_set.issuperset(self.tags))
        )


@dataclass(frozen=True, slots=True)
class LogPage:
    """A page of the global log. `next_after` is where the next read starts."""

    events: list[RecordedEvent]
    head: int
    next_after: int


def category_of(stream_id: str) -> str:
    """The part before the first '-', or the whole id when there is none."""
    return stream_id.split("-", 1)[0]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A client's state of a stream as of `version`; data and metadata are JSON text."""

    stream_id: str
    version: int
    data: str
    metadata: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Subscription:
    """A durable subscription: a filter and the position its consumer has processed."""

    name: str
    filter: LogFilter
    position: int
    updated_at: datetime
