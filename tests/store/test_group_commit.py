"""Group commit: a batch gives every request the answer it would get alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from app.domain.errors import DuplicateEventIdError, WrongExpectedVersionError
from app.domain.types import ANY_VERSION, AppendResult, ExpectedKind, ExpectedVersion, LogFilter
from app.settings import Settings
from app.store.bootstrap import Store, open_store
from tests.support.factories import new_event

NO_STREAM = ExpectedVersion(ExpectedKind.NO_STREAM, raw="*")


def exactly(version: int) -> ExpectedVersion:
    return ExpectedVersion(ExpectedKind.EXACT, frozenset({version}), raw=f'"{version}"')


class Batches(list[int]):
    """The size of every batch the writer committed, in order."""


Opened = tuple[Store, Batches]


@pytest.fixture
async def opened(settings: Settings) -> AsyncIterator[Opened]:
    batches = Batches()
    async with open_store(settings, on_batch=batches.append) as parts:
        yield parts, batches


async def in_one_batch(
    opened: Opened,
    *calls: tuple[str, list, ExpectedVersion],  # type: ignore[type-arg]
) -> list:  # type: ignore[type-arg]
    """Queue every call before the writer runs; assert they formed one batch."""
    parts, batches = opened
    before = len(batches)
    results = await asyncio.gather(
        *(parts.events.append(s, new, expected) for s, new, expected in calls),
        return_exceptions=True,
    )
    assert batches[before:] == [len(calls)], "the requests did not share one batch"
    return results


async def test_one_batch_mixes_success_412_and_replay(opened: Opened) -> None:
    store = opened[0].events
    original = [new_event(), new_event()]
    first = await store.append("S-1", original, NO_STREAM)
    results = await in_one_batch(
        opened,
        ("S-2", [new_event()], NO_STREAM),  # a new stream: 201
        ("S-1", [new_event()], exactly(1)),  # stale: 412, current 2
        ("S-1", original, exactly(0)),  # a retry of the first append: replayed
        ("S-1", [new_event()], exactly(2)),  # 201 at version 3
        ("S-1", [new_event()], exactly(2)),  # sees the move above: 412, current 3
        ("S-3", [new_event(id=original[0].id)], ANY_VERSION),  # reuses an id: 409
    )
    created, stale, replay, moved, stale_again, reused = results
    assert isinstance(created, AppendResult) and created.version == 1 and not created.replayed
    assert isinstance(stale, WrongExpectedVersionError) and stale.current_version == 2
    assert isinstance(replay, AppendResult) and replay.replayed
    assert (replay.version, replay.events) == (first.version, first.events)
    assert isinstance(moved, AppendResult) and moved.version == 3
    assert isinstance(stale_again, WrongExpectedVersionError)
    assert stale_again.current_version == 3
    assert isinstance(reused, DuplicateEventIdError)
    log = await store.read_log(0, 100, LogFilter())
    assert [e.position for e in log.events] == [1, 2, 3, 4]
    assert [(e.stream_id, e.version) for e in log.events] == [
        ("S-1", 1),
        ("S-1", 2),
        ("S-2", 1),
        ("S-1", 3),
    ]


async def test_a_stored_id_in_a_passing_request_falls_back_to_one_at_a_time(
    opened: Opened,
) -> None:
    store = opened[0].events
    original = [new_event()]
    await store.append("R-1", original, ANY_VERSION)
    results = await in_one_batch(
        opened,
        ("R-2", [new_event()], ANY_VERSION),
        ("R-1", original, ANY_VERSION),  # passes its precondition, collides on insert
    )
    fresh, replay = results
    assert isinstance(fresh, AppendResult) and not fresh.replayed
    assert isinstance(replay, AppendResult) and replay.replayed
    assert await store.head() == 2


async def test_identical_requests_in_one_batch_write_once(opened: Opened) -> None:
    store = opened[0].events
    batch = [new_event(), new_event()]
    results = await in_one_batch(opened, *[("I-1", batch, ANY_VERSION)] * 4)
    assert all(isinstance(r, AppendResult) for r in results)
    assert [r.replayed for r in results].count(False) == 1
    assert len({r.events for r in results}) == 1
    assert await store.head() == 2


@pytest.mark.parametrize("size", [1, 5, 50])
async def test_batches_keep_the_log_gap_free(opened: Opened, size: int) -> None:
    store = opened[0].events
    calls = [
        (f"G-{i % 7}", [new_event() for _ in range(1 + i % 3)], ANY_VERSION) for i in range(size)
    ]
    results = await in_one_batch(opened, *calls)
    assert all(isinstance(r, AppendResult) for r in results)
    log = await store.read_log(0, 1000, LogFilter())
    assert [e.position for e in log.events] == list(range(1, log.head + 1))
    receipts = [p.position for r in results for p in r.events]
    assert receipts == list(range(1, log.head + 1))  # arrival order is commit order


async def test_a_batch_is_bounded_in_bytes(settings: Settings) -> None:
    batches = Batches()
    bounded = settings.model_copy(update={"max_batch_bytes": 1024})
    big = {"pad": "x" * 600}  # each request's data and metadata take 615 bytes
    async with open_store(bounded, on_batch=batches.append) as parts:
        results = await asyncio.gather(
            *(parts.events.append(f"B-{i}", [new_event(data=big)], ANY_VERSION) for i in range(6))
        )
    assert all(isinstance(r, AppendResult) for r in results)
    # the first request of a batch is always taken; a second one passes 1024 bytes
    assert sum(batches) == 6 and max(batches) <= 2 and len(batches) >= 3, batches
