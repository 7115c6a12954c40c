"""The domain error tree. The store raises these; the API maps them to problem+json.

EvstoreError
 +-- NotFoundError
 |    +-- StreamNotFoundError(stream_id)
 |    +-- EventNotFoundError
 +-- WrongExpectedVersionError(stream_id, expected, current_version)
 +-- DuplicateEventIdError(event_ids)
 +-- LimitExceededError(limit, max)
 +-- StoreUnavailableError
 +-- SchemaOutOfDateError(current, required)
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


class WrongExpectedVersionError(EvstoreError):
    def __init__(self, stream_id: str, expected: str, current_version: int) -> None:
        super().__init__(
            f"stream {stream_id!r} is at version {current_version}, expected {expected}"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.current_version = current_version


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
