"""The domain error tree. The store raises these; the API maps them to problem+json
(app/api/problems.py), each class to one row.

EvstoreError                    base of every condition the domain or the store reports
 +-- NotFoundError              raised when something the request addresses does not exist
 |    +-- StreamNotFoundError   a stream has no events (stream_id)
 |    +-- EventNotFoundError    no event at that version or position
 |    +-- SnapshotNotFoundError a stream has no snapshot (stream_id)
 |    +-- SubscriptionNotFoundError  no subscription of that name (name)
 |    +-- TrackerNotFoundError  no tracker of that name (name)
 +-- StaleSnapshotError         a PUT snapshot is older than the stored one
 +-- SubscriptionConflictError  a subscription exists with another filter (name)
 +-- CheckpointMovedError       a checkpoint's If-Match names another position
 +-- OutOfRangeError            a value lies outside what the store holds (pointer)
 +-- WrongExpectedVersionError  an append's expected version does not match
 +-- AppendConditionFailedError  an append across streams whose expectations, condition
 |                              or tracker do not hold (streams, matched_position, tracker)
 +-- DuplicateEventIdError      an append reuses event ids stored elsewhere (event_ids)
 +-- LimitExceededError         a size limit was broken (limit, max)
 +-- StoreUnavailableError      the database cannot be reached or did not answer in time
 +-- SchemaOutOfDateError       the database schema is not at this version's revision
"""

from __future__ import annotations


class EvstoreError(Exception):
    """Base of every condition the domain or the store reports."""


class NotFoundError(EvstoreError):
    """Something addressed by the request does not exist."""


class StreamNotFoundError(NotFoundError):
    def __init__(self, stream_id: str) -> None:
        super().__init__(f"stream {stream_id!r} has no events")
        self.stream_id = stream_id


class EventNotFoundError(NotFoundError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)


class SnapshotNotFoundError(NotFoundError):
    def __init__(self, stream_id: str) -> None:
        super().__init__(f"stream {stream_id!r} has no snapshot")
        self.stream_id = stream_id


class SubscriptionNotFoundError(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no subscription named {name!r}")
        self.name = name


class StaleSnapshotError(EvstoreError):
    def __init__(self, stream_id: str, version: int, stored_version: int) -> None:
        super().__init__(
            f"stream {stream_id!r} already has a snapshot at version {stored_version}, "
            f"newer than {version}"
        )
        self.stream_id = stream_id
        self.stored_version = stored_version


class SubscriptionConflictError(EvstoreError):
    def __init__(self, name: str) -> None:
        super().__init__(f"subscription {name!r} exists with a different filter")
        self.name = name


class CheckpointMovedError(EvstoreError):
    def __init__(self, name: str, expected: str, position: int) -> None:
        super().__init__(f"subscription {name!r} is at position {position}, expected {expected}")
        self.name = name
        self.expected = expected
        self.position = position


class OutOfRangeError(EvstoreError):
    """A value in the request lies outside what the store holds (422 on the wire)."""

    def __init__(self, pointer: str, detail: str) -> None:
        super().__init__(detail)
        self.pointer = pointer
        self.detail = detail


class WrongExpectedVersionError(EvstoreError):
    def __init__(self, stream_id: str, expected: str, current_version: int) -> None:
        super().__init__(
            f"stream {stream_id!r} is at version {current_version}, expected {expected}"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.current_version = current_version


class AppendConditionFailedError(EvstoreError):
    """A conditional append across streams (POST /events) that must not be written:
    `streams` lists every unmet expectation (stream_id, expected as sent, current
    version); `matched_position` is the lowest event above `after` that matches the
    condition's query, when the condition failed."""

    def __init__(
        self,
        streams: list[tuple[str, int | str, int]],
        matched_position: int | None,
        tracker: tuple[str, int] | None = None,
    ) -> None:
        parts = [f"stream {s!r} is at version {v}, expected {e}" for s, e, v in streams]
        if matched_position is not None:
            parts.append(f"the event at position {matched_position} matches the condition")
        if tracker is not None:
            parts.append(f"tracker {tracker[0]!r} stands at {tracker[1]} already")
        super().__init__("; ".join(parts))
        self.streams = streams
        self.matched_position = matched_position
        self.tracker = tracker


class TrackerNotFoundError(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no tracker named {name!r}")
        self.name = name


class DuplicateEventIdError(EvstoreError):
    def __init__(self, event_ids: list[str]) -> None:
        super().__init__("event ids already used elsewhere in the store: " + ", ".join(event_ids))
        self.event_ids = event_ids


class LimitExceededError(EvstoreError):
    """A size limit was broken (413 on the wire)."""

    def __init__(self, limit: str, max: int, detail: str) -> None:
        super().__init__(detail)
        self.limit = limit
        self.max = max


class StoreUnavailableError(EvstoreError):
    """The database cannot be reached or did not answer in time."""


class SchemaOutOfDateError(EvstoreError):
    def __init__(self, current: str | None, required: str) -> None:
        super().__init__(
            f"database schema is at revision {current or 'none'}, this version needs "
            f"{required}: run `evstore migrate` (or start with EVSTORE_MIGRATE_ON_START=true)"
        )
