"""Live subscriptions over real HTTP: delivery, resume, filters, keep-alive, shutdown."""

from __future__ import annotations

import asyncio
import random
import signal
import socket
from collections.abc import Awaitable, Callable

import httpx
import pytest

from tests.live.conftest import ServerFactory
from tests.support.factories import append_body, event_body
from tests.support.sse_client import Message, messages

DEADLINE = 60.0  # bound on every wait; a healthy run takes a fraction of it

Until = Callable[[list[Message]], bool]


async def collect(
    client: httpx.AsyncClient,
    url: str,
    until: Until,
    headers: dict[str, str] | None = None,
    got: list[Message] | None = None,
) -> list[Message]:
    """Read messages until `until(got)`; pass `got` to watch them arrive."""
    got = [] if got is None else got

    async def run() -> None:
        async with client.stream("GET", url, headers=headers) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-store"
            assert response.headers["x-accel-buffering"] == "no"
            async for message in messages(response):
                got.append(message)
                if until(got):
                    return

    await asyncio.wait_for(run(), DEADLINE)
    return got


async def subscribed(
    client: httpx.AsyncClient, url: str, until: Until, headers: dict[str, str] | None = None
) -> asyncio.Task[list[Message]]:
    """Start collecting and return once the subscription has sent caught-up."""
    got: list[Message] = []
    task = asyncio.create_task(collect(client, url, until, headers, got))
    await asyncio.wait_for(wait_caught_up(got, task), DEADLINE)
    return task


def events_of(got: list[Message]) -> list[Message]:
    return [m for m in got if m.event is None and m.data]


def reached(position: int) -> Until:
    return lambda got: any(m.id is not None and m.position >= position for m in events_of(got))


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll an observable condition (another process's state) up to DEADLINE."""

    async def poll() -> None:
        while not await check():  # noqa: ASYNC110 - the state lives in another process
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(poll(), DEADLINE)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


async def wait_caught_up(got: list[Message], task: asyncio.Task[object] | None = None) -> None:
    async def seen() -> bool:
        if task is not None and task.done():
            task.result()  # surface the reader's failure
            raise AssertionError("the stream ended before caught-up")
        return any(m.event == "caught-up" for m in got)

    await eventually(seen, "caught-up")


async def append(client: httpx.AsyncClient, base: str, stream: str, n: int = 1) -> httpx.Response:
    response = await client.post(
        f"{base}/streams/{stream}", json=append_body(*(event_body() for _ in range(n)))
    )
    assert response.status_code == 201, response.text
    return response


async def read_log(client: httpx.AsyncClient, base: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    after = 0
    while True:
        page = (await client.get(f"{base}/events", params={"after": after, "limit": 1000})).json()
        found += page["events"]
        if not page["events"]:
            return found
        after = page["next_after"]


def assert_exact_delivery(got: list[Message], log: list[dict[str, object]], start: int) -> None:
    delivered = events_of(got)
    expected = [e for e in log if int(str(e["position"])) > start]
    assert [m.position for m in delivered] == [e["position"] for e in expected]
    assert [m.json["id"] for m in delivered] == [e["id"] for e in expected]
    assert [m.json for m in delivered] == expected
    assert len([m for m in got if m.event == "caught-up"]) <= 1


async def test_every_event_once_in_order_while_writers_append(
    backend: str, servers: ServerFactory
) -> None:
    reader = servers(live_poll_seconds=1)
    # On PostgreSQL the writers use another process, so the wake-ups cross processes.
    writer = servers(live_poll_seconds=1) if backend == "postgresql" else reader
    rng = random.Random(7)
    async with httpx.AsyncClient(timeout=DEADLINE) as client:
        for i in range(10):
            await append(client, writer.url, f"Backlog-{i % 3}", 2)
        sizes = [[rng.randint(1, 3) for _ in range(20)] for _ in range(8)]
        total = 20 + sum(map(sum, sizes))
        subscriber = asyncio.create_task(
            collect(client, f"{reader.url}/events/live?after=0", reached(total))
        )

        async def write(w: int) -> None:
            for i, n in enumerate(sizes[w]):
                await append(client, writer.url, f"W{w}-{i % 4}", n)

        await asyncio.gather(*(write(w) for w in range(8)))
        got = await subscriber
        log = await read_log(client, reader.url)
    assert len(log) == total
    assert got[0].retry == 2000
    assert_exact_delivery(got, log, 0)
    assert len([m for m in got if m.event == "caught-up"]) == 1


async def test_resume_with_last_event_id(servers: ServerFactory) -> None:
    server = servers()
    async with httpx.AsyncClient(timeout=DEADLINE) as client:
        await append(client, server.url, "Order-1", 10)

        def caught_up(got: list[Message]) -> bool:
            return any(m.event == "caught-up" for m in got)

        got = await collect(
            client, f"{server.url}/events/live?after=1", caught_up, headers={"Last-Event-ID": "4"}
        )
        log = await read_log(client, server.url)
    assert [m.position for m in events_of(got)] == list(range(5, 11))
    assert_exact_delivery(got, log, 4)
    (done,) = [m for m in got if m.event == "caught-up"]
    assert (done.id, done.json) == ("10", {"position": 10, "head": 10})


async def test_default_start_is_the_head_and_caught_up_comes_first(
    servers: ServerFactory,
) -> None:
    server = servers()
    async with httpx.AsyncClient(timeout=DEADLINE) as client:
        await append(client, server.url, "Old-1", 3)
        task = await subscribed(client, f"{server.url}/events/live", reached(4))
        await append(client, server.url, "New-1")
        got = await task
    assert got[0].retry == 2000
    assert (got[1].event, got[1].id, got[1].json) == (
        "caught-up",
        "3",
        {"position": 3, "head": 3},
    )
    assert [m.position for m in events_of(got)] == [4]


async def test_filters_checkpoint_and_keepalive(servers: ServerFactory) -> None:
    server = servers(live_checkpoint_seconds=0, live_keepalive_seconds=0.2)
    async with httpx.AsyncClient(timeout=DEADLINE) as client:
        await append(client, server.url, "Order-1")
        await append(client, server.url, "User-1")
        url = f"{server.url}/events/live?after=0&category=Order&category=Invoice"

        def done(got: list[Message]) -> bool:
            checkpoints = [m for m in got if m.event == "checkpoint"]
            pinged = any(m.comments == ["ping"] for m in got)
            return pinged and any(m.position >= 5 for m in checkpoints)

        task = await subscribed(client, url, done)
        await append(client, server.url, "Invoice-7")  # 3: matches
        await append(client, server.url, "User-2", 2)  # 4-5: scanned, no match
        got = await task
    delivered = events_of(got)
    assert [(m.position, m.json["stream_id"]) for m in delivered] == [
        (1, "Order-1"),
        (3, "Invoice-7"),
    ]
    checkpoints = [m for m in got if m.event == "checkpoint"]
    assert checkpoints[-1].json == {"position": checkpoints[-1].position}
    trace = [(m.event, m.id, m.comments) for m in got]
    assert all(c.position > 3 for c in checkpoints), str(trace)
    ids = [m.position for m in got if m.id is not None]
    assert ids == sorted(ids)


@pytest.mark.postgres_only
async def test_listener_killed_subscribers_miss_nothing(
    servers: ServerFactory, database_url: str
) -> None:
    import psycopg

    reader = servers(live_poll_seconds=0.5)
    writer = servers(live_poll_seconds=0.5)
    kill = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'evstore-listener' AND datname = current_database()"
    )
    async with httpx.AsyncClient(timeout=DEADLINE) as client:
        got_task = await subscribed(client, f"{reader.url}/events/live?after=0", reached(60))
        for i in range(20):
            await append(client, writer.url, f"K-{i % 3}")
        with psycopg.connect(database_url, autocommit=True) as conn:
            killed = conn.execute(kill).fetchall()
            assert len(killed) == 2  # one listener per server process
            for i in range(40):
                await append(client, writer.url, f"K-{i % 3}")
            got = await got_task
            listeners = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                "'evstore-listener' AND datname = current_database()"
            ).fetchone()
        log = await read_log(client, reader.url)
    assert_exact_delivery(got, log, 0)
    assert listeners is not None and listeners[0] >= 1  # reconnected


@pytest.mark.postgres_only
async def test_long_poll_wakes_across_processes(servers: ServerFactory) -> None:
    reader = servers(live_poll_seconds=30)  # the wake-up must come from NOTIFY
    writer = servers()
    async with httpx.AsyncClient(timeout=DEADLINE) as client:
        poll = asyncio.create_task(
            client.get(f"{reader.url}/events", params={"after": 0, "wait": 20})
        )
        await append(client, writer.url, "Poll-1")
        page = (await poll).json()
    assert [e["stream_id"] for e in page["events"]] == ["Poll-1"]


async def test_sigterm_ends_streams_and_exits(servers: ServerFactory) -> None:
    server = servers()
    async with httpx.AsyncClient(timeout=DEADLINE) as client:
        got: list[Message] = []

        async def follow() -> None:
            async with client.stream("GET", f"{server.url}/events/live") as response:
                async for message in messages(response):
                    got.append(message)

        task = asyncio.create_task(follow())
        await wait_caught_up(got, task)
        server.process.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(asyncio.to_thread(server.process.wait), 15)
        await asyncio.wait_for(task, 15)  # the stream ended cleanly instead of hanging
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert returncode == -signal.SIGTERM
    assert "Traceback" not in server.output()


async def test_slow_reader_is_disconnected_and_costs_bounded_memory(
    servers: ServerFactory,
) -> None:
    server = servers(live_send_timeout_seconds=1, live_cache_events=64, live_page_size=50)
    blob = "x" * 8000
    batches, per_batch = 40, 50  # 2000 events, ~16 MB per phase
    total = 2 * batches * per_batch

    async def append_phase(client: httpx.AsyncClient, phase: str) -> None:
        for b in range(batches):
            body = append_body(*(event_body(data={"blob": blob, "b": b}) for _ in range(per_batch)))
            response = await client.post(f"{server.url}/streams/{phase}-{b}", json=body)
            assert response.status_code == 201

    async def live_subscribers(client: httpx.AsyncClient) -> float:
        text = (await client.get(f"{server.url}/metrics")).text
        line = next(x for x in text.splitlines() if x.startswith("evstore_live_subscribers "))
        return float(line.split()[1])

    host, port = server.url.removeprefix("http://").split(":")
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        async with httpx.AsyncClient(timeout=DEADLINE) as client:
            normal = await subscribed(client, f"{server.url}/events/live?after=0", reached(total))
            # Warm-up: the same volume without the slow reader, so the allocator has
            # already grown to what parsing and serving it costs.
            await append_phase(client, "Warm")
            baseline = server.rss_bytes()
            slow.connect((host, int(port)))
            slow.sendall(b"GET /events/live?after=0 HTTP/1.1\r\nHost: x\r\n\r\n")
            await eventually(
                lambda: _equals(live_subscribers(client), 2), "the slow reader is subscribed"
            )
            await append_phase(client, "Big")
            got = await normal
            grown = server.rss_bytes() - baseline
            # The normal subscriber has closed its stream; the slow one can only have
            # been closed by the server.
            await eventually(
                lambda: _equals(live_subscribers(client), 0), "the slow reader is disconnected"
            )
        slow.settimeout(DEADLINE)
        while slow.recv(1 << 16):  # what the kernel buffered, then end of stream
            pass
    finally:
        slow.close()
    assert [m.position for m in events_of(got)] == list(range(1, total + 1))
    # Holding what the slow reader never took would cost 16 MB or more. What it may
    # hold (a page of 50 events, the transport's buffer) and the allocator's noise
    # came to 6.2 to 8.2 MB in runs on this machine (without the slow reader, under
    # 0.1 MB): the bound sits between the two.
    assert grown < 12 * 1024 * 1024, grown


async def _equals(value: Awaitable[float], expected: float) -> bool:
    return await value == expected


async def test_waiting_subscribers_hold_no_database_connection(servers: ServerFactory) -> None:
    server = servers(pool_size=2, pool_max_overflow=0)
    async with httpx.AsyncClient(timeout=DEADLINE) as client:
        await append(client, server.url, "Pool-1")
        # More waiting subscribers and long polls than the pool has connections.
        tasks = [
            await subscribed(client, f"{server.url}/events/live?after=0", reached(2))
            for _ in range(6)
        ]
        polls = [
            asyncio.create_task(client.get(f"{server.url}/events?after=1&wait=30"))
            for _ in range(4)
        ]

        async def none_in_use() -> bool:
            text = (await client.get(f"{server.url}/metrics")).text
            line = next(x for x in text.splitlines() if x.startswith("evstore_db_pool_checked_out"))
            return float(line.split()[1]) == 0

        # Reads take a connection for a moment; a waiter that kept one would never let
        # the count reach zero while all ten of them are still waiting.
        await eventually(none_in_use, "no pooled connection in use while all wait")
        assert not any(t.done() for t in [*tasks, *polls])
        # and appends still get connections while they all wait
        await append(client, server.url, "Pool-1")
        got = await asyncio.gather(*tasks)
        pages = [(await p).json() for p in polls]
    assert all([m.position for m in events_of(g)] == [1, 2] for g in got)
    assert all([e["position"] for e in page["events"]] == [2] for page in pages)


async def test_subscription_live_starts_after_the_checkpoint(servers: ServerFactory) -> None:
    server = servers()
    async with httpx.AsyncClient(timeout=DEADLINE) as client:
        await append(client, server.url, "Order-1", 3)
        await append(client, server.url, "User-1")
        created = await client.put(
            f"{server.url}/subscriptions/orders", json={"category": ["Order"]}
        )
        assert created.status_code == 201
        moved = await client.put(
            f"{server.url}/subscriptions/orders/checkpoint", json={"position": 1}
        )
        assert moved.status_code == 200
        url = f"{server.url}/subscriptions/orders/live"
        task = await subscribed(client, url, reached(6))
        await append(client, server.url, "User-2")
        await append(client, server.url, "Order-2")
        got = await task
        resumed = await collect(client, url, reached(6), headers={"Last-Event-ID": "3"})
        missing = await client.get(f"{server.url}/subscriptions/nope/live")
        after = (await client.get(f"{server.url}/subscriptions/orders")).json()
    assert after["position"] == 1  # reading does not move the checkpoint: at least once
    assert [m.position for m in events_of(got)] == [2, 3, 6]
    assert [m.position for m in events_of(resumed)] == [6]
    assert missing.status_code == 404


async def test_an_idle_unfiltered_subscriber_is_pinged(servers: ServerFactory) -> None:
    """Pings come from the subscriber's own task (its tail), after silence."""
    server = servers(live_keepalive_seconds=0.2)
    async with httpx.AsyncClient(timeout=DEADLINE) as client:
        got = await collect(
            client,
            f"{server.url}/events/live",
            lambda got: sum(m.comments == ["ping"] for m in got) >= 2,
        )
    assert [m.event for m in got if m.event] == ["caught-up"]
    assert not events_of(got)


async def test_idle_subscribers_that_hang_up_are_let_go(servers: ServerFactory) -> None:
    """Under `evstore serve` a subscriber with nothing to send learns of its lost
    connection from the server's protocol (no task of its own waits on receive()):
    hung-up subscribers leave the gauge although no event is ever appended."""
    server = servers(live_keepalive_seconds=3600)

    async def live_subscribers(client: httpx.AsyncClient) -> float:
        text = (await client.get(f"{server.url}/metrics")).text
        line = next(x for x in text.splitlines() if x.startswith("evstore_live_subscribers "))
        return float(line.split()[1])

    async with httpx.AsyncClient(timeout=DEADLINE) as client:
        tasks = [
            await subscribed(client, f"{server.url}/events/live", lambda got: False)
            for _ in range(5)
        ]
        await eventually(lambda: _equals(live_subscribers(client), 5), "five subscribers")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await eventually(lambda: _equals(live_subscribers(client), 0), "all five let go")


async def test_live_tag_filter_delivers_only_events_with_every_tag(
    servers: ServerFactory,
) -> None:
    """Waiters with tags are indexed by their first tag and tested whole."""
    server = servers()

    async def tagged(stream: str, *tags: str) -> None:
        body = append_body({**event_body(), "tags": list(tags)})
        response = await client.post(f"{server.url}/streams/{stream}", json=body)
        assert response.status_code == 201, response.text

    async with httpx.AsyncClient(timeout=DEADLINE) as client:
        url = f"{server.url}/events/live?after=0&tag=course:c1&tag=student:s1"
        task = await subscribed(client, url, reached(6))
        await tagged("Course-c1", "course:c1")  # 1: one of the two
        await tagged("Course-c1", "student:s1", "course:c1")  # 2: both
        await tagged("Course-c2", "course:c2", "student:s1")  # 3
        await append(client, server.url, "Other-1")  # 4: none
        await tagged("Course-c1", "course:c1", "student:s2")  # 5
        await tagged("Student-s1", "course:c1", "x", "student:s1")  # 6: both
        got = await task
    delivered = events_of(got)
    assert [(m.position, m.json["tags"]) for m in delivered] == [
        (2, ["student:s1", "course:c1"]),
        (6, ["course:c1", "x", "student:s1"]),
    ]
