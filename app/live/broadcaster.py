"""One broadcaster per process: fans the notifier's wake-ups out to subscribers.

It keeps `visible`, a position up to which every event is committed and known, and a
bounded cache of the newest events, contiguous up to `visible`. When the head moves
and someone follows it (a live tail or a waiting long poll), one refill task reads the
new events once, and every subscriber at the head is served from the cache; a
subscriber behind the cache reads its own pages from the database. When nobody
follows, `visible` jumps to the new head and the cache is dropped, without a read.
Subscribers hold nothing but a cursor and one page.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import OrderedDict, deque

from app.domain.errors import StoreUnavailableError
from app.domain.types import LogFilter, LogPage, RecordedEvent
from app.live.wire import event_message
from app.store.event_store import EventStore

EVERYTHING = LogFilter()


def _size(event: RecordedEvent) -> int:
    return len(event.data) + len(event.metadata)


log = logging.getLogger("evstore.broadcaster")
# After a failed refill read, the next one comes this soon, doubling up to the last.
RETRY_FIRST_SECONDS = 0.05
RETRY_LAST_SECONDS = 1.0


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
        self._changed = asyncio.Event()
        self._wanted = asyncio.Event()
        self._resync = False
        self._task: asyncio.Task[None] | None = None
        self.closing = False
        self.subscribers = 0  # live tails, counted by app.live.tail
        self._waiting = 0  # callers inside wait_beyond

    async def start(self) -> None:
        self.visible = self._target = await self.store.head()
        self._task = asyncio.create_task(self._refill_forever(), name="evstore-broadcaster")

    def close(self) -> None:
        """Shutdown: every tail and long poll returns at once."""
        self.closing = True
        self._signal()

    async def stop(self) -> None:
        self.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

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

    def _signal(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

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
            self._signal()

    async def wait_beyond(self, position: int, max_wait: float) -> bool:
        """Wait until an event after `position` is visible; False on timeout/close.
        `max_wait` may be math.inf (a tail with nothing due): then no timer is armed."""
        if self.visible > position or self.closing:
            return self.visible > position
        self._waiting += 1
        if self._resync or self._target > self.visible:
            self._wanted.set()  # `wake` skipped the read while nobody waited
        try:
            if max_wait == math.inf:
                await self._wait_past(position)
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max_wait):
                        await self._wait_past(position)
        finally:
            self._waiting -= 1
        return self.visible > position

    async def _wait_past(self, position: int) -> None:
        while self.visible <= position and not self.closing:
            await self._changed.wait()

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
                self._cached_bytes -= _size(cache[0])
            cache.append(event)
            self._cached_bytes += _size(event)
        while cache and self._cached_bytes > self.cache_bytes:
            self._cached_bytes -= _size(cache.popleft())

    @property
    def held_bytes(self) -> int:
        """Bytes of event data the caches hold (events and rendered messages)."""
        return self._cached_bytes + self._rendered_bytes

    async def read_fresh(self, after: int, limit: int, where: LogFilter) -> LogPage:
        """A page from the database: sees every append acknowledged before the call
        (the cache may trail the head by a moment)."""
        return await self.store.read_log(after, limit, where)

    async def read(self, after: int, limit: int, where: LogFilter) -> LogPage:
        """The next page after `after`, for a reader woken by `wait_beyond`: from the
        cache when it holds `after + 1`, else from the database."""
        cache = self._cache
        if cache and cache[0].position <= after + 1 and after < self.visible:
            return self._from_cache(after, limit, where)
        return await self.store.read_log(after, limit, where)

    def _from_cache(self, after: int, limit: int, where: LogFilter) -> LogPage:
        visible = self.visible
        start = after + 1 - self._cache[0].position
        found: list[RecordedEvent] = []
        for i in range(start, len(self._cache)):
            event = self._cache[i]
            if where.matches(event):
                found.append(event)
                if len(found) == limit:
                    return LogPage(found, visible, event.position)
        return LogPage(found, visible, visible)
