"""The broadcaster on a real store: no refill read while nobody follows the head, a
cache that stays contiguous up to `visible` when such a skip races a refill, a
failed refill that is retried without waiting for another append, and waiters whose
filters match nothing new that stay asleep and read nothing."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator

from app.domain.errors import StoreUnavailableError
from app.domain.types import ANY_VERSION, LogFilter, LogPage
from app.live.broadcaster import Broadcaster
from app.store.event_store import EventStore
from tests.support.factories import new_event

EVERYTHING = LogFilter()
DEADLINE = 30.0


class WatchedStore(EventStore):
    """The real store on the same engine, counting its log reads; while `held`, a read
    waits at `gate` (the seam that holds the broadcaster's refill read open)."""

    def __init__(self, store: EventStore) -> None:
        super().__init__(store.db, store.writer)
        self.reads = 0
        self.failures = 0  # this many next reads fail as if the pool were exhausted
        self.held = False
        self.gate = asyncio.Event()
        self.reading = asyncio.Event()

    async def read_log(self, after: int, limit: int, where: LogFilter) -> LogPage:
        self.reads += 1
        if self.failures:
            self.failures -= 1
            raise StoreUnavailableError("pool exhausted (a test's fault)")
        if self.held:
            self.reading.set()
            await self.gate.wait()
        return await super().read_log(after, limit, where)


@contextlib.asynccontextmanager
async def running(
    store: EventStore, cache_size: int, page_size: int, **options: int
) -> AsyncIterator[tuple[WatchedStore, Broadcaster]]:
    """A started broadcaster over a WatchedStore of `store`; stopped on the way out."""
    watched = WatchedStore(store)
    broadcaster = Broadcaster(watched, cache_size=cache_size, page_size=page_size, **options)
    await broadcaster.start()
    try:
        yield watched, broadcaster
    finally:
        await broadcaster.stop()


async def append(store: EventStore, n: int) -> int:
    """Append n events; the new head."""
    result = await store.append("Order-1", [new_event() for _ in range(n)], ANY_VERSION)
    return result.events[-1].position


async def beyond(broadcaster: Broadcaster, position: int, max_wait: float) -> bool:
    """Whether an event after `position` became visible within `max_wait`."""
    _, found = await broadcaster.wait_for(position, EVERYTHING, max_wait)
    return found


def positions(page: LogPage) -> list[int]:
    return [e.position for e in page.events]


async def test_nobody_follows_so_visible_jumps_without_a_read(store: EventStore) -> None:
    async with running(store, cache_size=100, page_size=10) as (watched, broadcaster):
        head = await append(store, 5)
        broadcaster.wake(head)
        assert (broadcaster.visible, watched.reads) == (head, 0)
        assert positions(await broadcaster.read(2, 10, EVERYTHING)) == [3, 4, 5]  # database
        assert watched.reads == 1
        # A tail follows: the next wake-up reads once, and readers share the cache.
        broadcaster.subscribers += 1
        waiter = asyncio.create_task(beyond(broadcaster, head, math.inf))
        head = await append(store, 3)
        broadcaster.wake(head)
        assert await asyncio.wait_for(waiter, DEADLINE)
        reads = watched.reads
        page = await broadcaster.read(5, 10, EVERYTHING)
        assert (positions(page), page.head, page.next_after) == ([6, 7, 8], 8, 8)
        assert watched.reads == reads


async def test_a_skip_during_a_refill_leaves_no_gap_in_the_cache(store: EventStore) -> None:
    async with running(store, cache_size=100, page_size=3) as (watched, broadcaster):
        broadcaster.subscribers += 1
        watched.held = True
        first = await append(store, 4)
        broadcaster.wake(first)  # the refill reads positions 1-3 ...
        await asyncio.wait_for(watched.reading.wait(), DEADLINE)
        broadcaster.subscribers -= 1  # ... while the only tail leaves,
        second = await append(store, 4)
        broadcaster.wake(second)  # so this wake-up skips to 8 without reading
        assert broadcaster.visible == second
        watched.held = False
        watched.gate.set()  # the stale page (1-3) arrives now: it must not be cached
        broadcaster.subscribers += 1
        follower = asyncio.create_task(beyond(broadcaster, second, math.inf))
        third = await append(store, 2)
        broadcaster.wake(third)
        assert await asyncio.wait_for(follower, DEADLINE)
        for after in range(third):
            page = await broadcaster.read(after, 100, EVERYTHING)
            assert positions(page) == list(range(after + 1, third + 1)), after


async def test_a_failed_refill_is_retried_without_another_append(store: EventStore) -> None:
    async with running(store, cache_size=100, page_size=10) as (watched, broadcaster):
        broadcaster.subscribers += 1  # a tail follows the head
        follower = asyncio.create_task(beyond(broadcaster, 0, math.inf))
        watched.failures = 3
        head = await append(store, 2)
        broadcaster.wake(head)
        # no other append or wake-up comes: only the retry can deliver the events
        assert await asyncio.wait_for(follower, 10.0)
        assert watched.failures == 0 and broadcaster.visible == head
        page = await broadcaster.read(0, 10, EVERYTHING)
        assert positions(page) == [1, 2]


async def test_the_caches_are_bounded_in_bytes(store: EventStore) -> None:
    budget = 64 * 1024
    options = {"cache_size": 1000, "page_size": 50, "cache_bytes": budget}
    async with running(store, **options) as (_, broadcaster):
        broadcaster.subscribers += 1
        big = {"pad": "x" * 10_000}  # 20 events of 10 KB: more than the budget
        for _ in range(4):
            result = await store.append(
                "Big-1", [new_event(data=big) for _ in range(5)], ANY_VERSION
            )
            follower = asyncio.create_task(beyond(broadcaster, 0, math.inf))
            broadcaster.wake(result.events[-1].position)
            assert await asyncio.wait_for(follower, DEADLINE)
        await asyncio.wait_for(beyond(broadcaster, 19, 10.0), DEADLINE)
        for position in range(1, 21):  # every message rendered once, the oldest evicted
            page = await broadcaster.read(position - 1, 1, EVERYTHING)
            broadcaster.message_for(page.events[0])
        assert 0 < broadcaster.held_bytes <= 2 * budget
        # every position is still served, from the cache or from the database
        for after in range(20):
            assert positions(await broadcaster.read(after, 100, EVERYTHING))[0] == after + 1


async def test_waiters_that_match_nothing_stay_asleep_and_read_nothing(store: EventStore) -> None:
    async with running(store, cache_size=100, page_size=10) as (watched, broadcaster):
        broadcaster.subscribers += 1
        invoices = LogFilter(categories=("Invoice",))
        shipped = LogFilter(streams=("Order-1",), types=("Shipped",))
        sleepers = [
            asyncio.create_task(broadcaster.wait_for(0, where, math.inf))
            for where in [invoices] * 100 + [shipped] * 100
        ]
        follower = asyncio.create_task(beyond(broadcaster, 0, math.inf))
        await asyncio.sleep(0)  # one turn: every task runs to its first await
        assert broadcaster.waiters == 201
        head = await append(store, 5)  # Order-1, type Happened: no sleeper matches
        broadcaster.wake(head)
        assert await asyncio.wait_for(follower, DEADLINE)  # the refill is dispatched
        assert not any(task.done() for task in sleepers)
        assert watched.reads == 1  # one refill, no read per waiter
        # An invoice wakes the invoice waiters, each with its cursor before the match.
        result = await store.append("Invoice-7", [new_event()], ANY_VERSION)
        position = result.events[0].position
        broadcaster.wake(position)
        woken = await asyncio.wait_for(asyncio.gather(*sleepers[:100]), DEADLINE)
        assert set(woken) == {(position - 1, True)}
        page = await broadcaster.read(position - 1, 10, invoices)
        assert (positions(page), watched.reads) == ([position], 2)
        assert not any(task.done() for task in sleepers[100:])
        # Closing returns the others with a cursor past everything they were shown.
        broadcaster.close()
        rest = await asyncio.wait_for(asyncio.gather(*sleepers[100:]), DEADLINE)
        assert set(rest) == {(position, False)}
        assert watched.reads == 2


async def test_a_match_in_the_cache_is_found_without_waiting(store: EventStore) -> None:
    async with running(store, cache_size=100, page_size=10) as (watched, broadcaster):
        broadcaster.subscribers += 1
        follower = asyncio.create_task(beyond(broadcaster, 0, math.inf))
        await store.append("Order-1", [new_event(), new_event("Shipped")], ANY_VERSION)
        broadcaster.wake(2)
        assert await asyncio.wait_for(follower, DEADLINE)
        shipped = LogFilter(types=("Shipped",))
        assert await broadcaster.wait_for(0, shipped, math.inf) == (1, True)
        assert await broadcaster.wait_for(2, shipped, 0) == (2, False)
        assert await broadcaster.wait_for(0, LogFilter(types=("Paid",)), 0) == (2, False)
        assert watched.reads == 1


async def test_thousands_of_waiters_are_all_woken(store: EventStore) -> None:
    """Wake-ups go out in slices, one per turn of the event loop: none is forgotten."""
    async with running(store, cache_size=100, page_size=10) as (_, broadcaster):
        broadcaster.subscribers += 1
        waiters = [
            asyncio.create_task(broadcaster.wait_for(0, where, math.inf))
            for where in [EVERYTHING] * 700 + [LogFilter(streams=("Order-1",))] * 700
        ]
        await asyncio.sleep(0)
        assert broadcaster.waiters == 1400
        head = await append(store, 1)
        broadcaster.wake(head)
        assert set(await asyncio.wait_for(asyncio.gather(*waiters), DEADLINE)) == {(0, True)}


async def test_pages_from_the_cache_are_bounded_in_bytes_as_database_pages(
    store: EventStore,
) -> None:
    async with running(store, cache_size=100, page_size=10) as (watched, broadcaster):
        watched.page_bytes = 1024
        broadcaster.subscribers += 1
        pad = {"p": "x" * 400}  # 411 characters of data and metadata each
        result = await store.append("Big-1", [new_event(data=pad) for _ in range(5)], ANY_VERSION)
        head = result.events[-1].position
        # the refill reads byte-bounded pages too: wait until the last one is in
        follower = asyncio.create_task(beyond(broadcaster, head - 1, math.inf))
        broadcaster.wake(head)
        assert await asyncio.wait_for(follower, DEADLINE)
        reads = watched.reads
        pages = [await broadcaster.read(after, 10, EVERYTHING) for after in (0, 2, 4)]
        assert watched.reads == reads  # all three from the cache
        from_db = await watched.read_log(0, 10, EVERYTHING)
        assert [(positions(p), p.next_after) for p in pages] == [
            ([1, 2], 2),
            ([3, 4], 4),
            ([5], 5),
        ]
        assert (positions(from_db), from_db.next_after) == ([1, 2], 2)
