"""The store contract, written once and run on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import pytest

from app.domain.errors import (
    DuplicateEventIdError,
    EventNotFoundError,
    StreamNotFoundError,
    WrongExpectedVersionError,
)
from app.domain.types import ANY_VERSION, ExpectedKind, ExpectedVersion, LogFilter
from app.store.event_store import EventStore
from tests.support.factories import new_event

NO_STREAM = ExpectedVersion(ExpectedKind.NO_STREAM, raw="*")
EXISTS = ExpectedVersion(ExpectedKind.EXISTS, raw="*")


def exactly(*versions: int) -> ExpectedVersion:
    return ExpectedVersion(ExpectedKind.EXACT, frozenset(versions), raw=str(versions))


async def test_round_trip_keeps_data_types_and_metadata(store: EventStore) -> None:
    data = {"int": 2**70, "neg": -1, "float": 2.5, "s": "é✓", "b": True, "n": None, "l": [1, []]}
    result = await store.append("Order-1", [new_event("Placed", data, {"c": "x"})], ANY_VERSION)
    assert (result.version, [e.version for e in result.events]) == (1, [1])
    page = await store.read_stream("Order-1", None, 10, backward=False)
    (event,) = page.events
    assert json.loads(event.data) == data
    assert json.loads(event.metadata) == {"c": "x"}
    assert (event.stream_id, event.type, event.version, event.position) == (
        "Order-1",
        "Placed",
        1,
        1,
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", event.recorded_at)


async def test_batch_gets_consecutive_versions_and_positions(store: EventStore) -> None:
    await store.append("A-1", [new_event()], ANY_VERSION)
    result = await store.append("B-1", [new_event() for _ in range(5)], ANY_VERSION)
    assert [e.version for e in result.events] == [1, 2, 3, 4, 5]
    assert [e.position for e in result.events] == [2, 3, 4, 5, 6]
    assert await store.head() == 6


@pytest.mark.parametrize(
    ("expected", "current", "ok"),
    [
        (NO_STREAM, 0, True),
        (NO_STREAM, 2, False),
        (EXISTS, 0, False),
        (EXISTS, 2, True),
        (exactly(2), 2, True),
        (exactly(1), 2, False),
        (exactly(1, 2), 2, True),
        (exactly(), 2, False),
        (exactly(0), 0, True),
        (ANY_VERSION, 0, True),
        (ANY_VERSION, 2, True),
    ],
)
async def test_every_precondition(
    store: EventStore, expected: ExpectedVersion, current: int, ok: bool
) -> None:
    if current:
        await store.append("S-1", [new_event() for _ in range(current)], ANY_VERSION)
    if ok:
        result = await store.append("S-1", [new_event()], expected)
        assert result.version == current + 1
    else:
        with pytest.raises(WrongExpectedVersionError) as failed:
            await store.append("S-1", [new_event()], expected)
        assert failed.value.current_version == current
        assert await store.stream_version("S-1") == current
    assert await store.head() == current + (1 if ok else 0)


async def test_failed_precondition_on_new_stream_leaves_nothing(store: EventStore) -> None:
    with pytest.raises(WrongExpectedVersionError):
        await store.append("Ghost-1", [new_event()], EXISTS)
    with pytest.raises(StreamNotFoundError):
        await store.read_stream("Ghost-1", None, 10, backward=False)
    assert await store.list_streams(None, (), None, 10) == []


async def test_concurrent_appends_one_winner(store: EventStore) -> None:
    await store.append("Hot-1", [new_event()], ANY_VERSION)
    outcomes = await asyncio.gather(
        *(store.append("Hot-1", [new_event()], exactly(1)) for _ in range(16)),
        return_exceptions=True,
    )
    won = [o for o in outcomes if not isinstance(o, BaseException)]
    lost = [o for o in outcomes if isinstance(o, WrongExpectedVersionError)]
    assert (len(won), len(lost)) == (1, 15)
    assert all(e.current_version == 2 for e in lost)


async def test_concurrent_writers_leave_gap_free_log(store: EventStore) -> None:
    async def writer(w: int) -> None:
        for i in range(10):
            await store.append(
                f"W{w}-{i % 3}", [new_event() for _ in range(1 + i % 3)], ANY_VERSION
            )

    await asyncio.gather(*(writer(w) for w in range(6)))
    page = await store.read_log(0, 1000, LogFilter())
    assert [e.position for e in page.events] == list(range(1, page.head + 1))
    by_stream: dict[str, list[int]] = {}
    for e in page.events:
        by_stream.setdefault(e.stream_id, []).append(e.version)
    assert all(v == list(range(1, len(v) + 1)) for v in by_stream.values())
    assert page.head == 6 * sum(1 + i % 3 for i in range(10))


async def test_retry_returns_original_and_writes_nothing(store: EventStore) -> None:
    batch = [new_event(), new_event()]
    first = await store.append("R-1", batch, NO_STREAM)
    await store.append("R-1", [new_event()], ANY_VERSION)
    again = await store.append("R-1", batch, NO_STREAM)  # precondition ignored on a replay
    assert again.replayed
    assert (again.version, again.events) == (first.version, first.events)
    assert await store.head() == 3


@pytest.mark.parametrize("case", ["partial", "other-stream", "other-order"])
async def test_conflicting_id_reuse_is_rejected(store: EventStore, case: str) -> None:
    a, b = new_event(), new_event()
    await store.append("C-1", [a, b], ANY_VERSION)
    stream, batch = {
        "partial": ("C-1", [a, new_event()]),
        "other-stream": ("C-2", [a, b]),
        "other-order": ("C-1", [b, a]),
    }[case]
    with pytest.raises(DuplicateEventIdError) as failed:
        await store.append(stream, batch, ANY_VERSION)
    assert set(failed.value.event_ids) <= {a.id, b.id}
    assert failed.value.event_ids
    assert await store.head() == 2


async def test_concurrent_identical_retries_write_once(store: EventStore) -> None:
    batch = [new_event(id=str(uuid.uuid4())) for _ in range(3)]
    results = await asyncio.gather(*(store.append("I-1", batch, ANY_VERSION) for _ in range(8)))
    assert sum(not r.replayed for r in results) == 1
    assert len({r.events for r in results}) == 1
    assert await store.head() == 3


async def test_paging_edges(store: EventStore) -> None:
    await store.append("P-1", [new_event() for _ in range(5)], ANY_VERSION)
    forward = await store.read_stream("P-1", 4, 10, backward=False)
    assert [e.version for e in forward.events] == [4, 5]
    past_end = await store.read_stream("P-1", 6, 10, backward=False)
    assert (past_end.events, past_end.version) == ([], 5)
    backward = await store.read_stream("P-1", None, 2, backward=True)
    assert [e.version for e in backward.events] == [5, 4]
    clamped = await store.read_stream("P-1", 99, 10, backward=True)
    assert [e.version for e in clamped.events] == [5, 4, 3, 2, 1]
    assert (await store.read_event("P-1", 3)).version == 3
    with pytest.raises(EventNotFoundError):
        await store.read_event("P-1", 6)
    assert (await store.read_event_at(2)).version == 2
    with pytest.raises(EventNotFoundError):
        await store.read_event_at(6)


async def test_filtered_log_reports_scan_progress(store: EventStore) -> None:
    await store.append("Order-1", [new_event("Placed")], ANY_VERSION)
    await store.append("User-1", [new_event("Joined") for _ in range(4)], ANY_VERSION)
    await store.append("Order-2", [new_event("Paid")], ANY_VERSION)
    orders = await store.read_log(0, 10, LogFilter(categories=("Order",)))
    assert [e.position for e in orders.events] == [1, 6]
    assert orders.next_after == 6
    nothing = await store.read_log(1, 10, LogFilter(categories=("Nope",)))
    assert (nothing.events, nothing.next_after, nothing.head) == ([], 6, 6)
    both = await store.read_log(0, 10, LogFilter(streams=("Order-2", "User-1"), types=("Paid",)))
    assert [e.position for e in both.events] == [6]
    limited = await store.read_log(0, 2, LogFilter(types=("Joined", "Placed")))
    assert [e.position for e in limited.events] == [1, 2]
    assert limited.next_after == 2


async def test_stream_listing(store: EventStore) -> None:
    for stream_id in ["b-1", "a-2", "a-1", "a_x", "c"]:
        await store.append(stream_id, [new_event()], ANY_VERSION)
    listed = await store.list_streams(None, (), None, 10)
    assert [s.stream_id for s in listed] == ["a-1", "a-2", "a_x", "b-1", "c"]
    assert [s.stream_id for s in await store.list_streams("a-", (), None, 10)] == ["a-1", "a-2"]
    assert [s.stream_id for s in await store.list_streams(None, ("a",), "a-1", 10)] == ["a-2"]
    assert [s.category for s in listed] == ["a", "a", "a_x", "b", "c"]
