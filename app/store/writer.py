"""Group commit: one writer task per process turns queued appends into one transaction.

The writer takes every append waiting in its queue (it never waits for company, so a
lone append is not delayed), and in one transaction:
1. locks the log_head row, then the existing stream rows of the batch in stream id
   order, and runs the conditions' queries (appends across streams) under the locks;
2. checks each request's expectations and condition in memory, in arrival order,
   against the locked versions and the committed matches, as the earlier requests of
   the batch move the versions and add events a later condition may match (DESIGN
   section 8);
3. for the requests that fail, looks up their event ids once: a retry of an append
   that already succeeded gets its original receipt, partial reuse a 409;
4. creates the rows of new streams, bumps the log_head counter once for the whole
   batch and inserts every accepted event in one statement, then commits.
Each request then gets its own answer, exactly as if it had been appended alone.
Anything unusual (an id that collides with a stored event or another request of the
batch, a stream created concurrently by another process) rolls the batch back, and
its requests are committed again one at a time, each as a batch of one through the
same transaction: there is no second way to write events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.domain.errors import (
    AppendConditionFailedError,
    DuplicateEventIdError,
    EvstoreError,
    StoreUnavailableError,
    WrongExpectedVersionError,
)
from app.domain.types import (
    AppendedEvent,
    AppendResult,
    Condition,
    Expectation,
    ExpectedVersion,
    MultiAppendResult,
    NewEvent,
    RecordedEvent,
    RecordedReceipt,
    Track,
)
from app.store.failures import (
    EventIdTakenError,
    VersionTakenError,
    connection_lost,
    translated,
)
from app.store.pg_write import PgWriteConnection, Use
from app.store.sqlite_write import SqliteTransaction, SqliteWriteConnection

log = logging.getLogger("evstore.writer")

# Rounds of a batch of one that met a concurrent writer before the client is told to
# retry; each round sees what the one before collided with.
ALONE_ROUNDS = 3

WriteConnection = PgWriteConnection | SqliteWriteConnection


Outcome = AppendResult | MultiAppendResult | EvstoreError


@dataclass
class _Request:
    """One append: `POST /streams/{id}` (`single` holds its expectation, one stream)
    or `POST /events` (`expect` and `condition`, any streams)."""

    events: list[tuple[str, NewEvent]]  # (stream id, event), in request order
    done: asyncio.Future[Any]
    single: ExpectedVersion | None = None
    expect: tuple[Expectation, ...] = ()
    condition: Condition | None = None
    track: Track | None = None
    bases: dict[str, int] = field(default_factory=dict)  # versions at this request's turn
    head: int = 0  # the last position taken before its events, at its turn
    outcome: Outcome | None = None

    @property
    def new(self) -> list[NewEvent]:
        return [e for _, e in self.events]

    @property
    def stream_id(self) -> str:
        """The stream of a single-stream append."""
        return self.events[0][0]

    @property
    def streams(self) -> list[str]:
        """Every stream it writes or expects, first written first."""
        return list(dict.fromkeys([s for s, _ in self.events] + [x.stream_id for x in self.expect]))


@dataclass
class _Batch:
    requests: list[_Request]
    accepted: list[_Request] = field(default_factory=list)
    known: dict[str, int] = field(default_factory=dict)  # versions as accepted so far
    trackers: dict[str, int] = field(default_factory=dict)  # moved by accepted requests
    use: Use | None = None  # the use of the PostgreSQL connection that ran it


class _RetryAloneError(Exception):
    """The batch met something only a batch of one decides; it was rolled back.
    `ids_taken`: an event id of the batch is stored already."""

    def __init__(self, ids_taken: bool = False) -> None:
        super().__init__("retry alone")
        self.ids_taken = ids_taken


class Writer:
    """The process's one writer task. `on_commit` is told the new head after each
    commit (the notifier); `on_batch` the number of requests of each batch (metrics)."""

    def __init__(
        self,
        connection: WriteConnection,
        on_commit: Callable[[int], None],
        on_batch: Callable[[int], None] | None = None,
        max_batch_events: int = 10_000,
        max_batch_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        self.connection = connection
        self.on_commit = on_commit
        self.on_batch = on_batch
        self.max_batch_events = max_batch_events
        # Data and metadata of one batch: PostgreSQL receives them as one JSON text.
        self.max_batch_bytes = max_batch_bytes
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="evstore-writer")
        self._task.add_done_callback(self._ended)

    @property
    def running(self) -> bool:
        """False once the writer task has ended (stopped, or failed): /health/ready
        reports it, and appends are refused with 503 instead of waiting for ever."""
        return self._task is not None and not self._task.done()

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("the append writer stopped", exc_info=task.exception())
        self._fail_queued("the append writer is not running")

    async def stop(self, drain_seconds: float = 10.0) -> None:
        """Finish what is queued (bounded), then stop."""
        if self._task is not None and not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), drain_seconds)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.connection.close()

    async def append(
        self, stream_id: str, new: list[NewEvent], expected: ExpectedVersion
    ) -> AppendResult:
        """Append to one stream (POST /streams/{id}): a 412 on a failed expectation."""
        events = [(stream_id, e) for e in new]
        result: AppendResult = await self._submit(_Request(events, self._future(), expected))
        return result

    async def append_across(
        self,
        events: list[tuple[str, NewEvent]],
        expect: tuple[Expectation, ...] = (),
        condition: Condition | None = None,
        track: Track | None = None,
    ) -> MultiAppendResult:
        """Append to any streams at once (POST /events), with expectations, a
        condition and a tracker: AppendConditionFailedError when they do not hold."""
        request = _Request(events, self._future(), expect=expect, condition=condition, track=track)
        result: MultiAppendResult = await self._submit(request)
        return result

    def _future(self) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    async def _submit(self, request: _Request) -> Any:
        if not self.running:
            raise StoreUnavailableError("the append writer is not running")
        self._queue.put_nowait(request)
        # The caller may go away; the append still commits or rolls back as a whole.
        return await asyncio.shield(request.done)

    async def _run(self) -> None:
        while True:
            requests = await self._next_batch()
            if await self._commit(requests):
                self._fail_queued("the database did not answer")

    async def _next_batch(self) -> list[_Request]:
        """Every queued request, up to the batch's bounds in events and bytes (the
        first request is always taken: its own size was bounded when it was parsed)."""
        first = await self._queue.get()
        requests, events, size = [first], len(first.new), _size(first)
        while not self._queue.empty():
            if events >= self.max_batch_events or size >= self.max_batch_bytes:
                break
            request = self._queue.get_nowait()
            requests.append(request)
            events += len(request.new)
            size += _size(request)
        return requests

    def _fail_queued(self, why: str) -> None:
        """The database just failed a batch (or the writer ended): the appends queued
        behind it have waited that long already, so they get a 503 now instead of each
        trying again."""
        while not self._queue.empty():
            request = self._queue.get_nowait()
            self._queue.task_done()
            if not request.done.done():
                request.done.set_exception(StoreUnavailableError(why))

    async def _commit(self, requests: list[_Request]) -> bool:
        """Commit a batch and answer its requests; True when the database failed it."""
        unavailable = False
        try:
            if self.on_batch is not None:
                self.on_batch(len(requests))
            try:
                await self._commit_batch(_Batch(requests))
            except _RetryAloneError:
                for request in requests:
                    await self._alone(request)
        except EvstoreError as e:
            unavailable = isinstance(e, StoreUnavailableError)
            for request in requests:
                request.outcome = request.outcome or e
        except Exception as e:  # a bug: fail this batch (500), keep serving the next
            log.error("an append batch failed", exc_info=e)
            for request in requests:
                if not request.done.done():
                    request.done.set_exception(e)
        for request in requests:
            self._queue.task_done()
            if request.done.done():
                continue
            if isinstance(request.outcome, AppendResult | MultiAppendResult):
                request.done.set_result(request.outcome)
            elif request.outcome is not None:
                request.done.set_exception(request.outcome)
        return unavailable

    async def _alone(self, request: _Request) -> None:
        """Commit one request as a batch of its own. A stored id makes it a replay or a
        409; a stream created or a version taken by another writer meanwhile makes it
        decide again, against what that writer committed."""
        for _ in range(ALONE_ROUNDS):
            try:
                await self._commit_batch(_Batch([request]))
                return
            except _RetryAloneError as e:
                if not e.ids_taken:
                    continue
            with translated():
                found = await self.connection.find_event_ids([e.id for e in request.new])
            if found:
                request.outcome = _replay_or_conflict(request, found)
                return
        request.outcome = StoreUnavailableError("the append kept colliding with others; retry")

    async def _commit_batch(self, batch: _Batch) -> None:
        ids = [e.id for r in batch.requests for e in r.new]
        if len(ids) != len(set(ids)):
            raise _RetryAloneError  # two requests of the batch share ids: decide alone
        now = datetime.now(UTC)
        stream_ids = sorted({s for r in batch.requests for s in r.streams})
        try:
            try:
                positions = await self._transaction(batch, stream_ids, now)
            except StoreUnavailableError as e:
                # The writer's connection is kept between batches without a ping: if it
                # was found dead after a quiet spell (a database restart), the batch
                # failed before its write was sent and nothing can have been
                # committed; a new connection takes it once more.
                if batch.use is None or not batch.use.stale or not connection_lost(e):
                    raise
                batch.accepted.clear()
                batch.use = None
                positions = await self._transaction(batch, stream_ids, now)
        except EventIdTakenError as e:
            raise _RetryAloneError(ids_taken=True) from e
        except VersionTakenError as e:
            raise _RetryAloneError from e
        offset = 0
        for request in batch.accepted:  # the positions as written, in batch order
            taken = positions[offset : offset + len(request.events)]
            offset += len(request.events)
            request.outcome = _receipt(request, taken)
        if positions:
            self._committed(positions[-1])

    async def _transaction(self, batch: _Batch, stream_ids: list[str], now: datetime) -> list[int]:
        """Decide and write the batch in one transaction; the positions written."""
        connection = self.connection
        conditions = [r.condition for r in batch.requests if r.condition is not None]
        trackers = sorted({r.track.name for r in batch.requests if r.track is not None})
        with translated():
            if isinstance(connection, SqliteWriteConnection):  # one call on its thread
                return await connection.transaction(
                    lambda t: _write(t, batch, now, *t.lock(stream_ids, conditions, trackers))
                )
            async with connection.transaction() as t:
                batch.use = t.use
                head, versions, matches, stood = await t.lock(stream_ids, conditions, trackers)
                failed = _decide(batch, head, versions, matches, stood)
                ids = _client_ids(failed)
                _settle(failed, await t.find_event_ids(ids) if ids else {})
                positions: list[int] = []
                if batch.accepted:
                    written = await t.write_batch(
                        versions, batch.known, _appends(batch), now, batch.trackers
                    )
                    if written is None:
                        raise _RetryAloneError  # another process created a stream meanwhile
                    positions = written
                await connection.commit(t, positions[-1] if positions else 0)
            return positions

    def _committed(self, head: int) -> None:
        # The batch is committed whatever the hook does: its answers stand.
        try:
            self.on_commit(head)
        except Exception as e:
            log.error("the after-commit hook failed", exc_info=e)


def _decide(
    batch: _Batch,
    head: int,
    versions: dict[str, int],
    matches: list[int | None],
    stood: dict[str, int],
) -> list[_Request]:
    """Check each request, in arrival order, against the locked versions and the
    conditions' committed matches, as the earlier requests of the batch move the
    versions and add events (which a later condition matches like committed ones);
    the accepted join `batch.accepted` and move `batch.known`. The requests that
    failed (their outcome says why, unless they turn out to be a retry)."""
    known = batch.known = dict(versions)
    trackers = dict(stood)  # where each tracker stands, as accepted so far
    position = head  # the last position taken, committed or by this batch
    added: list[RecordedEvent] = []  # the accepted events, for later conditions
    committed = iter(matches)
    failed: list[_Request] = []
    for request in batch.requests:
        request.bases = {s: known.get(s, 0) for s in request.streams}
        matched = next(committed) if request.condition is not None else None
        if request.single is not None:
            if not request.single.matches(request.bases[request.stream_id]):
                failed.append(request)
                continue
        else:
            unmet = [
                (x.stream_id, x.sent, request.bases[x.stream_id])
                for x in request.expect
                if not x.expected.matches(request.bases[x.stream_id])
            ]
            if request.condition is not None:
                matched = _first_match(request.condition, matched, added)
            track, tracked = request.track, None
            if track is not None and trackers.get(track.name, -1) >= track.position:
                tracked = (track.name, trackers[track.name])
            if unmet or matched is not None or tracked is not None:
                request.outcome = AppendConditionFailedError(unmet, matched, tracked)
                failed.append(request)
                continue
            if track is not None:
                trackers[track.name] = batch.trackers[track.name] = track.position
        request.head = position
        for stream_id, e in request.events:
            position += 1
            known[stream_id] = known.get(stream_id, 0) + 1
            added.append(
                RecordedEvent(
                    e.id, stream_id, e.type, known[stream_id], position, "", "", "", e.tags_json
                )
            )
        batch.accepted.append(request)
    return failed


def _first_match(
    condition: Condition, committed: int | None, added: list[RecordedEvent]
) -> int | None:
    """The lowest position above `after` that the condition matches: the committed
    match, or an event an earlier request of the batch was granted."""
    after = condition.after or 0
    for event in added:
        if event.position > after and condition.where.matches(event):
            return event.position if committed is None else min(committed, event.position)
    return committed


def _client_ids(failed: list[_Request]) -> list[str]:
    """The ids of failed requests that a stored append may hold (server ids are new)."""
    return [e.id for r in failed for e in r.new if e.client_id]


def _settle(failed: list[_Request], found: dict[str, tuple[str, int, int]]) -> None:
    """A failed request may be a retry of a stored append (200) or reuse ids (409);
    otherwise a single-stream append is a 412 with the version it saw, and an append
    across streams keeps its 409."""
    for request in failed:
        mine = {e.id: found[e.id] for e in request.new if e.id in found}
        if mine:
            request.outcome = _replay_or_conflict(request, mine)
            continue
        if request.single is not None:
            request.outcome = WrongExpectedVersionError(
                request.stream_id, request.single.raw, request.bases[request.stream_id]
            )


def _appends(batch: _Batch) -> list[tuple[str, int, list[NewEvent]]]:
    """The accepted events as runs of one stream each: (stream, version before the
    run, its events), in batch order."""
    runs: list[tuple[str, int, list[NewEvent]]] = []
    for request in batch.accepted:
        versions = dict(request.bases)
        for stream_id, e in request.events:
            if (
                runs
                and runs[-1][0] == stream_id
                and runs[-1][2]
                and versions[stream_id] == (runs[-1][1] + len(runs[-1][2]))
            ):
                runs[-1][2].append(e)
            else:
                runs.append((stream_id, versions[stream_id], [e]))
            versions[stream_id] += 1
    return runs


def _receipt(request: _Request, positions: list[int]) -> AppendResult | MultiAppendResult:
    """The answer of an accepted request, from the versions and positions it got."""
    versions = dict(request.bases)
    events = []
    for (stream_id, e), position in zip(request.events, positions, strict=True):
        versions[stream_id] += 1
        events.append(RecordedReceipt(e.id, stream_id, versions[stream_id], position))
    if request.single is not None:
        receipt = tuple(AppendedEvent(e.id, e.version, e.position) for e in events)
        return AppendResult(request.stream_id, versions[request.stream_id], receipt)
    written = dict.fromkeys(s for s, _ in request.events)
    streams = tuple((s, versions[s]) for s in written)
    return MultiAppendResult(positions[-1] if positions else request.head, tuple(events), streams)


def _write(
    t: SqliteTransaction,
    batch: _Batch,
    now: datetime,
    head: int,
    versions: dict[str, int],
    matches: list[int | None],
    stood: dict[str, int],
) -> list[int]:
    """The SQLite transaction's body, on the writer's thread: as the PostgreSQL one."""
    failed = _decide(batch, head, versions, matches, stood)
    ids = _client_ids(failed)
    _settle(failed, t.find_event_ids(ids) if ids else {})
    if not batch.accepted:
        return []
    written = t.write_batch(versions, batch.known, _appends(batch), now, batch.trackers)
    if written is None:
        raise _RetryAloneError  # another process created a stream meanwhile
    return written


def _size(request: _Request) -> int:
    events = request.events
    if len(events) == 1:  # most appends: no generator
        return events[0][1].size
    return sum(e.size for _, e in events)


def _replay_or_conflict(request: _Request, found: dict[str, tuple[str, int, int]]) -> Outcome:
    """The original receipt when the request repeats a stored append (every event in
    the same stream, in the same order, at consecutive positions); else the
    DuplicateEventIdError to answer."""
    if request.single is not None:
        return replay_or_conflict(request.stream_id, request.new, found)
    stored = [found.get(e.id) for _, e in request.events]
    if all(e.client_id for _, e in request.events) and all(s is not None for s in stored):
        places = [s for s in stored if s is not None]
        first = places[0][2]
        same = all(
            s[0] == stream_id and s[2] == first + i
            for i, ((stream_id, _), s) in enumerate(zip(request.events, places, strict=True))
        )
        if same:
            events = tuple(
                RecordedReceipt(e.id, s[0], s[1], s[2])
                for (_, e), s in zip(request.events, places, strict=True)
            )
            versions: dict[str, int] = {}
            for event in events:
                versions[event.stream_id] = event.version
            return MultiAppendResult(events[-1].position, events, tuple(versions.items()), True)
    return DuplicateEventIdError([e.id for _, e in request.events if e.id in found])


def replay_or_conflict(
    stream_id: str, new: list[NewEvent], found: dict[str, tuple[str, int, int]]
) -> AppendResult | DuplicateEventIdError:
    """The original receipt when `new` repeats a stored append (same stream, same ids,
    same order, consecutive versions); else the DuplicateEventIdError to answer."""
    stored = [found.get(e.id) for e in new]
    same_stream = [s for s in stored if s is not None and s[0] == stream_id]
    if len(same_stream) == len(new) and all(e.client_id for e in new):
        first = same_stream[0][1]
        if [s[1] for s in same_stream] == list(range(first, first + len(new))):
            receipt = tuple(
                AppendedEvent(e.id, s[1], s[2]) for e, s in zip(new, same_stream, strict=True)
            )
            return AppendResult(stream_id, same_stream[-1][1], receipt, replayed=True)
    return DuplicateEventIdError([e.id for e in new if e.id in found])
