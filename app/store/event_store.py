"""The event store: appends under optimistic concurrency, and every read.

One implementation for both backends; the few statements that differ live in
`app.store.append` and `app.store.queries`. Driver errors are translated here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.domain.errors import (
    DuplicateEventIdError,
    EventNotFoundError,
    StoreUnavailableError,
    StreamNotFoundError,
    WrongExpectedVersionError,
)
from app.domain.types import (
    AppendedEvent,
    AppendResult,
    ExpectedVersion,
    LogFilter,
    LogPage,
    NewEvent,
    RecordedEvent,
    StreamInfo,
    StreamPage,
    category_of,
)
from app.store import append as tx
from app.store import queries
from app.store.engine import BEGIN_MODE, is_unavailable, sever_driver

log = logging.getLogger("evstore.store")


class _EventIdTakenError(Exception):
    """Internal: the insert hit events_event_id_key; the transaction was rolled back."""


class _VersionTakenError(Exception):
    """Internal: the backstop events_stream_id_version_key fired (the stream row lock
    should make that impossible); the transaction was rolled back and is retried."""


class EventStore:
    """Appends and reads over one engine. Create one per process; it holds no state
    besides the engine and (on SQLite) the in-process writer lock."""

    def __init__(
        self,
        engine: AsyncEngine,
        deadline: float | None = None,
    ) -> None:
        self.engine = engine
        # Bound on one use of a connection (checkout and statements); PostgreSQL only.
        self.deadline = deadline if engine.dialect.name == "postgresql" else None
        self.dialect = engine.dialect.name
        # SQLite has one writer per file; queueing here is cheaper than busy-waiting.
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None
        # Set by the app to its group-commit writer; None appends one at a time.
        self.batcher: (
            Callable[[str, list[NewEvent], ExpectedVersion], Awaitable[AppendResult]] | None
        ) = None
        # Called with the new head after each committed append (the notifier's hook).
        self.after_commit: list[Callable[[int], None]] = []

    @contextlib.asynccontextmanager
    async def connect(self, write: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection from the pool, with driver errors translated; `write` makes
        SQLite transactions take the write lock up front (BEGIN IMMEDIATE).

        On PostgreSQL the whole use is bounded by `deadline`: statement_timeout is
        enforced by the server, which never sees a query sent into a stalled
        connection. At the deadline the connection's socket is shut down, so whatever
        waits on it (a statement, or the rollback SQLAlchemy shields on the way out)
        fails at once as a disconnect, and the caller gets StoreUnavailableError."""
        timer: asyncio.TimerHandle | None = None
        try:
            async with asyncio.timeout(self.deadline):  # the checkout and its pre-ping
                conn = await self.engine.connect().start()
            if self.deadline is not None:
                timer = asyncio.get_running_loop().call_later(self.deadline, sever, conn)
            try:
                if write and self.dialect == "sqlite":
                    conn = await conn.execution_options(**{BEGIN_MODE: "IMMEDIATE"})
                yield conn
            finally:
                if timer is not None:
                    timer.cancel()
                await conn.close()
        except TimeoutError as e:
            raise StoreUnavailableError("the database did not answer in time") from e
        except exc.SQLAlchemyError as e:
            if is_unavailable(e):
                raise StoreUnavailableError(type(e).__name__) from e
            raise
        except OSError as e:
            raise StoreUnavailableError(type(e).__name__) from e

    # --- append --------------------------------------------------------------------

    async def append(
        self, stream_id: str, new: Sequence[NewEvent], expected: ExpectedVersion
    ) -> AppendResult:
        """Append `new` atomically at the stream's next versions and the log's next
        positions, if `expected` matches. A retry of an append that already succeeded
        (same ids, same stream, same order) returns the original result and writes
        nothing. Raises WrongExpectedVersionError, DuplicateEventIdError,
        StoreUnavailableError. The write is shielded from the caller's cancellation, so
        it either commits or rolls back as a whole."""
        if self.batcher is not None:
            return await self.batcher(stream_id, list(new), expected)
        return await asyncio.shield(self.append_one(stream_id, list(new), expected))

    @contextlib.asynccontextmanager
    async def write_lock(self) -> AsyncIterator[None]:
        """Held around every SQLite write transaction of this process."""
        if self._write_lock is None:
            yield
        else:
            async with self._write_lock:
                yield

    def pool_checked_out(self) -> int:
        """Connections of the pool in use right now."""
        checked_out = getattr(self.engine.pool, "checkedout", None)
        return int(checked_out()) if callable(checked_out) else 0

    def committed(self, head: int) -> None:
        """Tell the after-commit hooks (the notifier) that the head moved."""
        for hook in self.after_commit:
            hook(head)

    async def append_one(
        self, stream_id: str, new: list[NewEvent], expected: ExpectedVersion
    ) -> AppendResult:
        for _ in range(3):
            try:
                async with self.write_lock():
                    return await self._append_once(stream_id, new, expected)
            except _VersionTakenError:
                continue  # the retry reads the stream's version again and decides anew
            except _EventIdTakenError:
                async with self.connect() as conn:
                    found = await tx.find_event_ids(conn, [e.id for e in new])
                if found:
                    return replay_or_conflict(stream_id, new, found)
        raise StoreUnavailableError("append kept colliding; retry")  # pragma: no cover

    async def _append_once(
        self, stream_id: str, new: list[NewEvent], expected: ExpectedVersion
    ) -> AppendResult:
        category = category_of(stream_id)
        now = datetime.now(UTC)
        try:
            async with self.connect(write=True) as conn, conn.begin():
                current = await tx.lock_stream(conn, stream_id, category, now)
                if not expected.matches(current):
                    client_ids = [e.id for e in new if e.client_id]
                    found = await tx.find_event_ids(conn, client_ids) if client_ids else {}
                    if found:
                        return replay_or_conflict(stream_id, new, found)
                    raise WrongExpectedVersionError(stream_id, expected.raw, current)
                await tx.move_stream(conn, stream_id, current + len(new), now)
                appended = await tx.insert_events(conn, stream_id, current, new, now)
        except exc.IntegrityError as e:
            constraint = violated_constraint(e)
            if constraint == "events_event_id_key":
                raise _EventIdTakenError from e
            if constraint == "events_stream_id_version_key":
                raise _VersionTakenError from e
            raise
        self.committed(appended[-1].position)
        return AppendResult(stream_id, current + len(new), tuple(appended))

    # --- reads ---------------------------------------------------------------------

    async def head(self) -> int:
        """The highest committed position (0 on an empty store)."""
        async with self.connect() as conn:
            return await queries.head(conn)

    async def read_stream(
        self, stream_id: str, start: int | None, limit: int, backward: bool
    ) -> StreamPage:
        """A page of the stream from version `start` (inclusive); raises
        StreamNotFoundError when the stream has no events."""
        async with self.connect() as conn:
            if backward:
                # The version first, then the page at or below it (committed together,
                # so the page is complete up to that version).
                version = await queries.stream_version(conn, stream_id)
                first = version if start is None else min(start, version)
                page = await queries.stream_events(conn, stream_id, first, limit, True)
            else:
                page = await queries.stream_events(conn, stream_id, start or 1, limit, False)
                version = await queries.stream_version(conn, stream_id)
        if not version:
            raise StreamNotFoundError(stream_id)
        return StreamPage(stream_id, version, page)

    async def stream_version(self, stream_id: str) -> int:
        """The stream's version, 0 when it has no events."""
        async with self.connect() as conn:
            return await queries.stream_version(conn, stream_id)

    async def read_event(self, stream_id: str, version: int) -> RecordedEvent:
        async with self.connect() as conn:
            found = await queries.event_at_version(conn, stream_id, version)
        if found is None:
            raise EventNotFoundError(f"stream {stream_id!r} has no event at version {version}")
        return found

    async def read_event_at(self, position: int) -> RecordedEvent:
        async with self.connect() as conn:
            found = await queries.event_at_position(conn, position)
        if found is None:
            raise EventNotFoundError(f"no event at position {position}")
        return found

    async def read_log(self, after: int, limit: int, where: LogFilter) -> LogPage:
        """Events after `after` in position order, at most `limit`, matching `where`.
        The head is read first: every position up to it is committed and visible."""
        async with self.connect() as conn:
            head = await queries.head(conn)
            found = await queries.log_events(conn, after, head, limit, where)
        # A short page means everything up to the head was scanned.
        next_after = found[-1].position if len(found) == limit else max(after, head)
        return LogPage(found, head, next_after)

    async def list_streams(
        self, prefix: str | None, categories: Sequence[str], after: str | None, limit: int
    ) -> list[StreamInfo]:
        async with self.connect() as conn:
            return await queries.streams_page(conn, prefix, categories, after, limit)

    async def ping(self) -> int:
        """The head, or StoreUnavailableError: a health check that touches the database."""
        return await self.head()


def replay_or_conflict(
    stream_id: str, new: list[NewEvent], found: dict[str, tuple[str, int, int]]
) -> AppendResult:
    """The original receipt when `new` repeats a stored append (same stream, same ids,
    same order, consecutive versions); DuplicateEventIdError otherwise."""
    stored = [found.get(e.id) for e in new]
    same_stream = [s for s in stored if s is not None and s[0] == stream_id]
    if len(same_stream) == len(new) and all(e.client_id for e in new):
        first = same_stream[0][1]
        if [s[1] for s in same_stream] == list(range(first, first + len(new))):
            receipt = tuple(
                AppendedEvent(e.id, s[1], s[2]) for e, s in zip(new, same_stream, strict=True)
            )
            return AppendResult(stream_id, same_stream[-1][1], receipt, replayed=True)
    raise DuplicateEventIdError([e.id for e in new if e.id in found])


def sever(conn: AsyncConnection) -> None:
    """Shut down the socket under a PostgreSQL connection that outlived its deadline."""
    fairy = conn.sync_connection.connection if conn.sync_connection else None
    sever_driver(getattr(fairy, "driver_connection", None) if fairy is not None else None)


def violated_constraint(error: exc.IntegrityError) -> str | None:
    """The name of the unique constraint an insert broke, on either backend."""
    diag = getattr(error.orig, "diag", None)
    if diag is not None:  # psycopg
        return getattr(diag, "constraint_name", None)
    message = str(error.orig)  # SQLite names the columns, not the constraint
    return {
        "UNIQUE constraint failed: events.event_id": "events_event_id_key",
        "UNIQUE constraint failed: events.stream_id, events.version": (
            "events_stream_id_version_key"
        ),
    }.get(message)
