"""The global order (DESIGN section 3): positions are gap-free and in commit order, so a
reader that has seen position p has seen, or can read, every position below p.

Every test tails GET /events with a small page through `LogTail`, which checks each page
as it arrives: a page after `after` must start at after + 1 and run without holes, and a
short page must reach the head it reports. A reader shown position p while a position
below p is missing would skip that event for good; that is the violation we look for.
The last test runs the deterministic interleave against a deliberately broken append
(tests/support/broken_store.py) and asserts that the checker catches it.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from app.main import create_app
from app.settings import Settings
from app.store import append
from tests.support import broken_store
from tests.support.factories import append_body, event_body
from tests.support.servers import running_servers

PAGE = 4
WRITERS = 8
APPENDS_PER_WRITER = 40
STREAMS = 20
HOLD_KEY = 7_300_001  # advisory lock key the held append waits on
HELD_STREAM = "held-1"

Event = dict[str, Any]
Acks = dict[str, tuple[str, int, int]]  # event id -> (stream_id, version, position)


def page_violations(after: int, limit: int, page: dict[str, Any]) -> list[str]:
    """What is wrong with this unfiltered page of the log read after `after`."""
    positions = [e["position"] for e in page["events"]]
    expected = list(range(after + 1, after + 1 + len(positions)))
    found = []
    if positions != expected:
        found.append(
            f"after={after}: saw positions {positions}, expected {expected}: "
            f"a position below {max(positions, default=after)} was missing"
        )
    last = positions[-1] if positions else after
    if len(positions) < limit and last < page["head"]:
        found.append(f"after={after}: short page {positions} stops below head {page['head']}")
    return found


@dataclass
class LogTail:
    """A reader that tails the log page by page and records every broken promise."""

    client: httpx.AsyncClient
    limit: int = PAGE
    after: int = 0
    seen: list[Event] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    async def read(self, wait: float = 0) -> list[Event]:
        params = {"after": self.after, "limit": self.limit, "wait": wait}
        response = await self.client.get("/events", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        self.violations.extend(page_violations(self.after, self.limit, page))
        events: list[Event] = page["events"]
        self.seen.extend(events)
        if events:
            self.after = events[-1]["position"]
        return events

    async def read_to_head(self) -> None:
        while len(await self.read()) == self.limit:
            pass


def check_complete_log(tail: LogTail, acks: Acks) -> None:
    """The tail saw positions 1..head, every acknowledged event exactly once, and each
    stream's versions 1..n in position order."""
    assert tail.violations == []
    assert [e["position"] for e in tail.seen] == list(range(1, len(acks) + 1))
    ids = [e["id"] for e in tail.seen]
    assert len(set(ids)) == len(ids)
    assert {e["id"]: (e["stream_id"], e["version"], e["position"]) for e in tail.seen} == acks
    versions: dict[str, list[int]] = defaultdict(list)
    for e in tail.seen:
        versions[e["stream_id"]].append(e["version"])
    for stream_versions in versions.values():
        assert stream_versions == list(range(1, len(stream_versions) + 1))


async def write(client: httpx.AsyncClient, rng: random.Random, acks: Acks) -> None:
    """APPENDS_PER_WRITER appends of 1 to 3 events to random streams, no precondition."""
    for _ in range(APPENDS_PER_WRITER):
        stream_id = f"Order-{rng.randrange(STREAMS)}"
        sent = [event_body() for _ in range(rng.randint(1, 3))]
        response = await client.post(f"/streams/{stream_id}", json=append_body(*sent))
        assert response.status_code == 201, response.text
        receipt = response.json()["events"]
        assert [e["id"] for e in receipt] == [e["id"] for e in sent]
        first = receipt[0]["position"]
        assert [e["position"] for e in receipt] == list(range(first, first + len(sent)))
        acks.update({e["id"]: (stream_id, e["version"], e["position"]) for e in receipt})


async def writers_against_a_tail(
    writer_clients: list[httpx.AsyncClient], reader: httpx.AsyncClient
) -> None:
    """WRITERS concurrent writers (spread over the clients) while one reader tails."""
    acks: Acks = {}
    tail = LogTail(reader)
    writers = [
        asyncio.create_task(write(writer_clients[i % len(writer_clients)], random.Random(i), acks))
        for i in range(WRITERS)
    ]
    try:
        async with asyncio.timeout(90):
            while not all(w.done() for w in writers):
                await tail.read(wait=1)  # long poll while the writers run
            await asyncio.gather(*writers)
            await tail.read_to_head()  # every acknowledged append is below this head
    finally:
        for w in writers:
            w.cancel()
    assert len(acks) >= WRITERS * APPENDS_PER_WRITER
    check_complete_log(tail, acks)


async def test_tail_sees_every_acknowledged_event_once_in_order(
    client: httpx.AsyncClient,
) -> None:
    await writers_against_a_tail([client], client)


@pytest.mark.postgres_only
@pytest.mark.slow
async def test_tail_through_one_process_sees_writes_through_two(
    database_url: str, tmp_path: Path
) -> None:
    with running_servers(database_url, tmp_path, count=2) as (one, two):
        async with (
            httpx.AsyncClient(base_url=one.url, timeout=30) as first,
            httpx.AsyncClient(base_url=two.url, timeout=30) as second,
        ):
            await writers_against_a_tail([first, second], first)


# --- a deterministic interleave on PostgreSQL ----------------------------------------

HOLD_TRIGGER = f"""
CREATE FUNCTION evstore_test_hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared({HOLD_KEY});
    RETURN NEW;
END $$;
CREATE TRIGGER evstore_test_hold BEFORE INSERT ON events FOR EACH ROW
    WHEN (NEW.stream_id = '{HELD_STREAM}') EXECUTE FUNCTION evstore_test_hold();
"""

Control = psycopg.AsyncConnection[Any]


async def lock_waiters(control: Control, wait_events: list[str], query_like: str) -> int:
    """Backends of this database (not ours) waiting on a heavyweight lock."""
    cursor = await control.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        " AND wait_event = ANY(%s) AND query LIKE %s",
        (wait_events, query_like),
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll an observable condition until it holds, or fail after a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)  # poll interval


@dataclass
class HeldRun:
    tail: LogTail
    seed: list[str]
    a: list[Event]  # receipts
    b: list[Event]
    held_pages: list[list[int]]  # positions the tail saw while A was held
    b_blocked: bool  # B was seen waiting on a row lock of log_head while A was held


@pytest.fixture
async def other_process(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A second app on the same database: its own engine and group-commit writer, as
    another API process has (appends of one process queue behind each other)."""
    second = create_app(settings)
    async with second.router.lifespan_context(second):
        transport = httpx.ASGITransport(second)
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as c:
            yield c


async def run_held_append(
    client: httpx.AsyncClient, other: httpx.AsyncClient, database_url: str
) -> HeldRun:
    """Append A to HELD_STREAM and hold it inside its transaction (a trigger waits on an
    advisory lock the test holds); then append B to another stream through another
    process's writer; tail the log while A is held; release A; tail to the head."""
    tasks: list[asyncio.Task[httpx.Response]] = []
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as control:
        await control.execute(HOLD_TRIGGER)
        tail = LogTail(client)
        seed = append_body(event_body(), event_body())
        assert (await client.post("/streams/seed-1", json=seed)).status_code == 201
        assert [e["position"] for e in await tail.read()] == [1, 2]

        await control.execute("SELECT pg_advisory_lock(%s)", (HOLD_KEY,))
        try:
            a = asyncio.create_task(
                client.post(f"/streams/{HELD_STREAM}", json=append_body(event_body(), event_body()))
            )
            tasks.append(a)

            async def a_is_held() -> bool:
                if a.done():
                    raise AssertionError(f"append A was not held: {a.result().text}")
                return await lock_waiters(control, ["advisory"], "%") == 1

            await eventually(a_is_held, "append A to wait in its trigger")
            held_pages = [[e["position"] for e in await tail.read()]]

            b = asyncio.create_task(other.post("/streams/other-1", json=append_body()))
            tasks.append(b)

            async def b_is_blocked_or_done() -> bool:
                if b.done():
                    return True
                return await lock_waiters(control, ["transactionid", "tuple"], "%log_head%") == 1

            await eventually(b_is_blocked_or_done, "append B to block on log_head or commit")
            b_blocked = not b.done()
            held_pages.append([e["position"] for e in await tail.read()])
            assert not a.done()
        finally:
            await control.execute("SELECT pg_advisory_unlock(%s)", (HOLD_KEY,))
            async with asyncio.timeout(30):
                responses = await asyncio.gather(*tasks)
    assert [r.status_code for r in responses] == [201, 201], [r.text for r in responses]
    await tail.read_to_head()
    return HeldRun(
        tail=tail,
        seed=[e["id"] for e in seed["events"]],
        a=responses[0].json()["events"],
        b=responses[1].json()["events"],
        held_pages=held_pages,
        b_blocked=b_blocked,
    )


@pytest.mark.postgres_only
async def test_held_append_holds_back_every_later_commit(
    client: httpx.AsyncClient, other_process: httpx.AsyncClient, database_url: str
) -> None:
    run = await run_held_append(client, other_process, database_url)

    assert run.tail.violations == []
    assert run.b_blocked, "B committed while A held positions below it"
    assert run.held_pages == [[], []], "a position became visible while A was held"
    a_positions = [e["position"] for e in run.a]
    b_positions = [e["position"] for e in run.b]
    assert a_positions == [3, 4] and b_positions == [5]
    assert [e["position"] for e in run.tail.seen] == [1, 2, 3, 4, 5]
    assert [e["id"] for e in run.tail.seen] == run.seed + [e["id"] for e in run.a + run.b]


@pytest.mark.postgres_only
async def test_checker_catches_positions_drawn_from_a_sequence(
    client: httpx.AsyncClient,
    other_process: httpx.AsyncClient,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await broken_store.install_sequence(conn)
    monkeypatch.setattr(append, "PG_WRITE_BATCH", broken_store.BROKEN_PG_WRITE_BATCH)
    monkeypatch.setattr(append, "PG_LOCK_HEAD", broken_store.UNLOCKED_HEAD)

    run = await run_held_append(client, other_process, database_url)

    # B was not held back: it committed a higher position while A's lower one was open,
    a_positions = [e["position"] for e in run.a]
    (b_position,) = [e["position"] for e in run.b]
    assert not run.b_blocked
    assert a_positions[0] == 3 and b_position > 3
    # the tail was shown B while position 3 was missing, and the checker said so,
    assert run.held_pages == [[], [b_position]]
    assert run.tail.violations[0].startswith(f"after=2: saw positions [{b_position}]")
    # and the tail never saw A's first event, although it sits in the log.
    assert run.a[0]["id"] not in {e["id"] for e in run.tail.seen}
    log = (await client.get("/events", params={"after": 0})).json()["events"]
    assert run.a[0]["id"] in {e["id"] for e in log}
