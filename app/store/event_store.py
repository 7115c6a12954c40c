"""The event store: appends (through the group-commit writer) and every read.

One implementation for both backends; the few statements that differ live in
`app.store.append` and `app.store.queries`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from app.domain.errors import EventNotFoundError, StreamNotFoundError, TrackerNotFoundError
from app.domain.types import (
    AppendResult,
    Condition,
    Expectation,
    ExpectedVersion,
    LogFilter,
    LogPage,
    MultiAppendResult,
    NewEvent,
    RecordedEvent,
    StreamInfo,
    StreamPage,
    Track,
    Tracker,
)
from app.store import queries
from app.store.database import Database
from app.store.writer import Writer


class EventStore:
    """Appends and reads over one database; one per process."""

    def __init__(self, db: Database, writer: Writer, page_bytes: int = 4 << 20) -> None:
        self.db = db
        self.writer = writer
        # Pages of events end early once their data and metadata pass this many bytes
        # (always holding one event): a page of big events is never a huge body.
        self.page_bytes = page_bytes
        # Callers of head() that wait for the next read of log_head (see head()).
        self._head_waiters: list[asyncio.Future[int]] = []
        self._head_reader: asyncio.Task[None] | None = None

    async def append(
        self, stream_id: str, new: Sequence[NewEvent], expected: ExpectedVersion
    ) -> AppendResult:
        """Append `new` atomically at the stream's next versions and the log's next
        positions, if `expected` matches. A retry of an append that already succeeded
        (same ids, same stream, same order) returns the original result and writes
        nothing. Raises WrongExpectedVersionError, DuplicateEventIdError,
        StoreUnavailableError. The write is shielded from the caller's cancellation, so
        it either commits or rolls back as a whole."""
        return await self.writer.append(stream_id, list(new), expected)

    async def append_across(
        self,
        events: Sequence[tuple[str, NewEvent]],
        expect: Sequence[Expectation] = (),
        condition: Condition | None = None,
        track: Track | None = None,
    ) -> MultiAppendResult:
        """Append events to several streams atomically (POST /events), if every
        expectation holds and no event that the condition's query matches lies above
        its `after`; the check runs under the append lock, so of concurrent appends
        that would each violate another's condition exactly one succeeds. Raises
        AppendConditionFailedError, DuplicateEventIdError, StoreUnavailableError;
        a retry of a stored append returns its original result."""
        return await self.writer.append_across(list(events), tuple(expect), condition, track)

    async def tracker(self, name: str) -> Tracker:
        """Where a tracker stands; TrackerNotFoundError when none is stored."""
        async with self.db.connect() as conn:
            found = await queries.trackers_page(conn, name, None, 1, exact=True)
        if not found:
            raise TrackerNotFoundError(name)
        return found[0]

    async def list_trackers(
        self, prefix: str | None, after: str | None, limit: int
    ) -> list[Tracker]:
        async with self.db.connect() as conn:
            return await queries.trackers_page(conn, prefix, after, limit)

    # --- reads ---------------------------------------------------------------------

    async def head(self) -> int:
        """The highest committed position (0 on an empty store), read after the call
        began. Concurrent callers share reads: those that arrive while a read is in
        flight wait for the next one, which starts after they arrived, so a burst of
        10,000 subscribers costs a few reads and pool checkouts, not 10,000."""
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._head_waiters.append(waiter)
        if self._head_reader is None or self._head_reader.done():
            self._head_reader = asyncio.create_task(self._read_heads())
        return await asyncio.shield(waiter)

    async def _read_heads(self) -> None:
        while self._head_waiters:
            waiters, self._head_waiters = self._head_waiters, []
            try:
                head = await self.db.head()
            except asyncio.CancelledError:
                for waiter in waiters:
                    waiter.cancel()
                raise
            except Exception as e:  # StoreUnavailableError, most likely: theirs to see
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(e)
                continue
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(head)

    async def read_stream(
        self, stream_id: str, start: int | None, limit: int, backward: bool
    ) -> StreamPage:
        """A page of the stream from version `start` (inclusive); raises
        StreamNotFoundError when the stream has no events."""
        async with self.db.connect() as conn:
            if backward:
                # The version first, then the page at or below it (committed together,
                # so the page is complete up to that version).
                version = await queries.stream_version(conn, stream_id)
                first = version if start is None else min(start, version)
                page, cut = await queries.stream_events(
                    conn, stream_id, first, limit, True, self.page_bytes
                )
            else:
                page, cut = await queries.stream_events(
                    conn, stream_id, start or 1, limit, False, self.page_bytes
                )
                version = await queries.stream_version(conn, stream_id)
        if not version:
            raise StreamNotFoundError(stream_id)
        return StreamPage(stream_id, version, page, cut)

    async def stream_version(self, stream_id: str) -> int:
        """The stream's version, 0 when it has no events."""
        async with self.db.connect() as conn:
            return await queries.stream_version(conn, stream_id)

    async def read_event(self, stream_id: str, version: int) -> RecordedEvent:
        async with self.db.connect() as conn:
            found = await queries.event_at_version(conn, stream_id, version)
        if found is None:
            raise EventNotFoundError(f"stream {stream_id!r} has no event at version {version}")
        return found

    async def read_event_at(self, position: int) -> RecordedEvent:
        async with self.db.connect() as conn:
            found = await queries.event_at_position(conn, position)
        if found is None:
            raise EventNotFoundError(f"no event at position {position}")
        return found

    async def read_log(self, after: int, limit: int, where: LogFilter) -> LogPage:
        """Events after `after` in position order, at most `limit` and about
        `page_bytes`, matching `where`. The head is read first: every position up to
        it is committed and visible."""
        async with self.db.connect() as conn:
            head = await queries.head(conn)
            found, cut = await queries.log_events(conn, after, head, limit, where, self.page_bytes)
        # A short page that was not cut means everything up to the head was scanned.
        full = cut or len(found) == limit
        next_after = found[-1].position if full else max(after, head)
        return LogPage(found, head, next_after)

    async def read_log_backward(self, before: int | None, limit: int, where: LogFilter) -> LogPage:
        """The newest events below `before` (None: past the head), newest first, at
        most `limit` and about `page_bytes`, matching `where`. The page's `next_after`
        holds where the next backward read starts (its `before`): the last position
        returned, or 1 once the scan reached the first position."""
        async with self.db.connect() as conn:
            head = await queries.head(conn)
            top = head + 1 if before is None else min(before, head + 1)
            found, cut = await queries.log_events_backward(conn, top, limit, where, self.page_bytes)
        full = cut or len(found) == limit
        next_before = found[-1].position if full else min(top, 1)
        return LogPage(found, head, next_before)

    async def list_streams(
        self, prefix: str | None, categories: Sequence[str], after: str | None, limit: int
    ) -> list[StreamInfo]:
        async with self.db.connect() as conn:
            return await queries.streams_page(conn, prefix, categories, after, limit)

    def pool_checked_out(self) -> int:
        """Connections of the pool in use right now."""
        return self.db.pool_checked_out()

    @property
    def writing(self) -> bool:
        """Whether appends can be taken: the group-commit writer runs."""
        return self.writer.running

    async def ping(self) -> int:
        """The head, or StoreUnavailableError: a health check that touches the database."""
        return await self.head()
