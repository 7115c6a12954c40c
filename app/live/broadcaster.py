"""One broadcaster per process: fans the notifier's wake-ups out to subscribers.

It keeps `visible`, a position up to which every event is committed and known, and a
bounded cache of the newest events, contiguous up to `visible`. When the head moves
and someone follows it (a live tail or a waiting long poll), one refill task reads the
new events once, and every subscriber at the head is served from the cache; a
subscriber behind the cache reads its own pages from the database. When nobody
follows, `visible` jumps to the new head and the cache is dropped, without a read.
Subscribers hold nothing but a cursor and one page.

Waiters (`wait_for`) are indexed by their filter; after each refill the new events
are tested against them in memory and only those a new event matches are woken. The
others sleep on, costing neither a read nor a task wake-up, and when they do return
(timer, shutdown) their cursor has moved past every event they were shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import OrderedDict, deque

from app.domain.errors import StoreUnavailableError
from app.domain.types import LogFilter, LogPage, RecordedEvent, category_of
from app.live.wire import event_message
from app.store.event_store import EventStore

EVERYTHING = LogFilter()
log = logging.getLogger("evstore.broadcaster")
# After a failed refill read, the next one comes this soon, doubling up to the last.
RETRY_FIRST_SECONDS = 0.05
RETRY_LAST_SECONDS = 1.0


# Waiters woken per turn of the event loop (see `Broadcaster._wake`).
WAKE_SLICE = 256


class _Waiter:
    """A tail or long poll waiting for a match after `cursor`."""

    __slots__ = ("cursor", "matched", "timer", "where", "woken")

    def __init__(self, cursor: int, where: LogFilter, woken: asyncio.Future[None]) -> None:
        self.cursor = cursor
        self.where = where
        self.woken = woken
        self.timer: asyncio.TimerHandle | None = None
        self.matched = False  # set by `_dispatch`, before `woken` (which may be a turn later)


class Broadcaster:
    def __init__(
        self, store: EventStore, cache_size: int, page_size: int, cache_bytes: int = 64 << 20
    ) -> None:
        self.store = store
        self.page_size = page_size
        # Both caches are bounded in bytes as well as in events: 2,048 events of 1 MiB
        # would pin 2 GiB, and their rendered messages as much again.
        self.cache_bytes = cache_bytes
        self._cached_bytes = 0
        self._rendered_bytes = 0
        self.visible = 0
        self._target = 0
        self._cache: deque[RecordedEvent] = deque(maxlen=cache_size)
        # Rendered SSE messages by position: each event is encoded once per process,
        # however many subscribers it goes to.
        self._rendered: OrderedDict[int, bytes] = OrderedDict()
        self._rendered_max = max(cache_size, page_size)
        self._everyone: set[_Waiter] = set()  # waiters with no filter
        self._by_stream: dict[str, set[_Waiter]] = {}
        self._by_category: dict[str, set[_Waiter]] = {}
        self._by_type: dict[str, set[_Waiter]] = {}
        self._by_tag: dict[str, set[_Waiter]] = {}
        self._by_query: set[_Waiter] = set()  # queries of several items
        self._wanted = asyncio.Event()
        self._resync = False
        self._task: asyncio.Task[None] | None = None
        self.closing = False
        self.subscribers = 0  # live tails, counted by app.live.tail
        self._waiting = 0  # callers inside wait_for

    async def start(self) -> None:
        self.visible = self._target = await self.store.head()
        self._task = asyncio.create_task(self._refill_forever(), name="evstore-broadcaster")

    def close(self) -> None:
        """Shutdown: every tail and long poll returns at once."""
        self.closing = True
        self._wake_all()

    async def stop(self) -> None:
        self.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def waiting(self) -> int:
        """Callers inside wait_for: live tails and long polls waiting for an event."""
        return self._waiting

    def wake(self, head: int | None) -> None:
        """Called by the notifier: the head is at least `head` (None: re-read it)."""
        if head is None:
            self._resync = True
        elif head > self._target:
            self._target = head
        else:
            return
        if self.subscribers or self._waiting:
            self._wanted.set()
        elif self._target > self.visible:
            # Nobody follows the head: skip the read. Every position up to a notified
            # head is committed, so `visible` may jump; the cache would have a gap.
            self._cache.clear()
            self._cached_bytes = 0
            self.visible = self._target

    async def _refill_forever(self) -> None:
        backoff = RETRY_FIRST_SECONDS
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            try:
                await self._refill()
            except StoreUnavailableError:
                log.warning("cannot reach the database; refilling again in %.2fs", backoff)
            except Exception:  # tails wait with no timer: this task must outlive any bug
                log.exception("refill failed; refilling again in %.2fs", backoff)
            else:
                backoff = RETRY_FIRST_SECONDS
                continue
            # A wake-up that repeats the head is ignored, so nothing else would ask
            # again: the events this refill missed would wait for the next append.
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RETRY_LAST_SECONDS)
            self._wanted.set()

    async def _refill(self) -> None:
        if self._resync:
            self._resync = False
            self._target = max(self._target, await self.store.head())
        while self.visible < self._target:
            start = self.visible
            page = await self.store.read_log(start, self.page_size, EVERYTHING)
            if self.visible != start:
                continue  # `wake` skipped ahead meanwhile: this page would leave a gap
            self._keep(page.events)
            self.visible = max(start, page.next_after)
            self._target = max(self._target, page.head)
            self._dispatch(page.events)

    async def wait_for(
        self, position: int, where: LogFilter, max_wait: float, until_moved: bool = False
    ) -> tuple[int, bool]:
        """Wait until an event after `position` that `where` matches is visible, or
        `max_wait` passes (math.inf: no timer), or the broadcaster closes. With
        `until_moved`, a timeout that finds nothing new visible past `position` waits
        another `max_wait` (an idle tail looks every so often whether it has a
        checkpoint to send, and costs one timer callback when it has not).

        Returns `(cursor, found)`: no visible event in (position, cursor] matches, so
        the caller reads after `cursor`; `found` says a match may follow it. A waiter
        costs no read and no task wake-up while the new events match nothing: each
        refill tests them against the waiters' filters in memory (`_dispatch`)."""
        cursor, found = self._scan(position, where)
        if found or self.closing or max_wait <= 0:
            return cursor, found
        loop = asyncio.get_running_loop()
        waiter = _Waiter(cursor, where, loop.create_future())
        self._enlist(waiter)
        if self._resync or self._target > self.visible:
            self._wanted.set()  # `wake` skipped the read while nobody waited
        if max_wait != math.inf:
            waiter.timer = loop.call_later(max_wait, self._expire, waiter, max_wait, until_moved)
        try:
            await waiter.woken
        finally:
            if waiter.timer is not None:
                waiter.timer.cancel()
            self._discharge(waiter)
        if waiter.matched:
            return waiter.cursor, True
        # Every event that became visible while it waited was tested against its filter.
        return max(waiter.cursor, self.visible), False

    def _expire(self, waiter: _Waiter, every: float, until_moved: bool) -> None:
        if waiter.woken.done():
            return
        if until_moved and self.visible <= waiter.cursor and not self.closing:
            loop = asyncio.get_running_loop()
            waiter.timer = loop.call_later(every, self._expire, waiter, every, until_moved)
            return
        waiter.woken.set_result(None)

    def _scan(self, position: int, where: LogFilter) -> tuple[int, bool]:
        """What the cache says of the visible events after `position`: the cursor
        past those that do not match, and whether one that does (or one the cache no
        longer holds, to be read from the database) comes next."""
        visible = self.visible
        if visible <= position:
            return position, False
        cache = self._cache
        if not cache or cache[0].position > position + 1:
            return position, True
        for i in range(position + 1 - cache[0].position, len(cache)):
            event = cache[i]
            if where.matches(event):
                return event.position - 1, True
        return visible, False

    def _enlist(self, waiter: _Waiter) -> None:
        self._waiting += 1
        where = waiter.where
        if where.is_empty:
            self._everyone.add(waiter)
            return
        if where.any_of:
            self._by_query.add(waiter)
            return
        index, keys = self._index_of(where)
        for key in keys:
            index.setdefault(key, set()).add(waiter)

    def _index_of(self, where: LogFilter) -> tuple[dict[str, set[_Waiter]], tuple[str, ...]]:
        """Where a filtered waiter is indexed: under each value of its first list
        (OR within it), or under its first tag; the whole filter is tested on each
        candidate. Queries of several items are tested on every new event."""
        if where.streams:
            return self._by_stream, where.streams
        if where.categories:
            return self._by_category, where.categories
        if where.types:
            return self._by_type, where.types
        return self._by_tag, where.tags[:1]

    def _discharge(self, waiter: _Waiter) -> None:
        self._waiting -= 1
        where = waiter.where
        if where.is_empty:
            self._everyone.discard(waiter)
            return
        if where.any_of:
            self._by_query.discard(waiter)
            return
        index, keys = self._index_of(where)
        for key in keys:
            waiters = index.get(key)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del index[key]

    def _dispatch(self, events: list[RecordedEvent]) -> None:
        """After a refill: wake the waiters a new event matches. The others stay
        asleep; their cursor moves with `visible`."""
        if not events:
            return
        due: list[_Waiter] = []
        last = events[-1].position
        for waiter in self._everyone:
            if last > waiter.cursor and not waiter.matched:
                waiter.matched = True
                due.append(waiter)
        by_stream, by_category, by_type = self._by_stream, self._by_category, self._by_type
        by_tag, by_query = self._by_tag, self._by_query
        if by_stream or by_category or by_type or by_tag or by_query:
            for event in events:
                groups = [
                    by_stream.get(event.stream_id),
                    by_category.get(category_of(event.stream_id)) if by_category else None,
                    by_type.get(event.type),
                    by_query,
                ]
                if by_tag and event.tags != "[]":
                    groups.extend(by_tag.get(tag) for tag in event.tag_set)
                for candidates in groups:
                    if not candidates:
                        continue
                    for waiter in candidates:
                        if (
                            not waiter.matched
                            and event.position > waiter.cursor
                            and waiter.where.matches(event)
                        ):
                            waiter.matched = True
                            waiter.cursor = event.position - 1
                            due.append(waiter)
        self._wake(due)

    def _wake(self, waiters: list[_Waiter]) -> None:
        """Resolve the waiters in slices, one slice per turn of the event loop, so
        that waking thousands of subscribers leaves room for the appends' I/O."""
        for waiter in waiters[:WAKE_SLICE]:
            if not waiter.woken.done():
                waiter.woken.set_result(None)
        if len(waiters) > WAKE_SLICE:
            asyncio.get_running_loop().call_soon(self._wake, waiters[WAKE_SLICE:])

    def _wake_all(self) -> None:
        waiters = list(self._everyone)
        for index in (self._by_stream, self._by_category, self._by_type, self._by_tag):
            for group in index.values():
                waiters.extend(group)
        waiters.extend(self._by_query)
        for waiter in waiters:
            if not waiter.woken.done():
                waiter.woken.set_result(None)

    def message_for(self, event: RecordedEvent) -> bytes:
        """The event's SSE message, rendered once and shared by every subscriber."""
        rendered = self._rendered.get(event.position)
        if rendered is None:
            rendered = self._rendered[event.position] = event_message(event)
            self._rendered_bytes += len(rendered)
            while self._rendered and (
                len(self._rendered) > self._rendered_max or self._rendered_bytes > self.cache_bytes
            ):
                self._rendered_bytes -= len(self._rendered.popitem(last=False)[1])
        return rendered

    def _keep(self, events: list[RecordedEvent]) -> None:
        """Add a refill's events to the cache, dropping the oldest past its bounds."""
        cache = self._cache
        if cache.maxlen == 0:
            return
        for event in events:
            if len(cache) == cache.maxlen:
                self._cached_bytes -= cache[0].size
            cache.append(event)
            self._cached_bytes += event.size
        while cache and self._cached_bytes > self.cache_bytes:
            self._cached_bytes -= cache.popleft().size

    @property
    def waiters(self) -> int:
        """Tails and long polls waiting now."""
        return self._waiting

    @property
    def held_bytes(self) -> int:
        """Bytes of event data the caches hold (events and rendered messages)."""
        return self._cached_bytes + self._rendered_bytes

    async def read_fresh(self, after: int, limit: int, where: LogFilter) -> LogPage:
        """A page from the database: sees every append acknowledged before the call
        (the cache may trail the head by a moment)."""
        return await self.store.read_log(after, limit, where)

    async def read(self, after: int, limit: int, where: LogFilter) -> LogPage:
        """The next page after `after`, for a reader woken by `wait_for`: from the
        cache when it holds `after + 1`, else from the database."""
        if after >= self.visible:
            return LogPage([], self.visible, after)  # nothing new: `wait_for` said so
        cache = self._cache
        if cache and cache[0].position <= after + 1:
            return self._from_cache(after, limit, where)
        return await self.store.read_log(after, limit, where)

    def _from_cache(self, after: int, limit: int, where: LogFilter) -> LogPage:
        """A page as `EventStore.read_log` would give it: at most `limit` events, and
        ending before the event that would pass the store's page bytes."""
        visible = self.visible
        start = after + 1 - self._cache[0].position
        budget, taken = self.store.page_bytes, 0
        found: list[RecordedEvent] = []
        for i in range(start, len(self._cache)):
            event = self._cache[i]
            if where.matches(event):
                taken += event.size
                if found and taken > budget:
                    return LogPage(found, visible, found[-1].position)
                found.append(event)
                if len(found) == limit:
                    return LogPage(found, visible, event.position)
        return LogPage(found, visible, visible)
