"""Long polls at scale: one big event that wakes many long polls is rendered once.

Every long poll woken by the same append answers the same page. With a body of its
own each, clients that read slowly hold polls x body at once (2,000 polls of a 3.5 MB
event took a server to 3.8 GB); with one shared body, each holds only the chunk in
flight (app/api/observe.py sends big bodies in chunks)."""

from __future__ import annotations

import socket

import httpx

from tests.live.conftest import ServerFactory
from tests.live.test_sse import eventually
from tests.support.factories import append_body, event_body

DEADLINE = 60.0
POLLS = 40
BLOB = "x" * (1000 * 1000)  # about 1 MB of data, under max_event_bytes
EVENTS = 12  # one append and one page of 12 MB: more than the kernel takes off us
MiB = 1024 * 1024


async def test_long_polls_woken_by_one_big_event_share_one_body(servers: ServerFactory) -> None:
    server = servers(max_body_bytes=16 * MiB, max_page_bytes=16 * MiB, send_timeout_seconds=120)
    host, port = server.url.removeprefix("http://").split(":")
    polls: list[socket.socket] = []
    try:
        async with httpx.AsyncClient(timeout=DEADLINE) as client:

            async def waiters(n: int) -> bool:
                text = (await client.get(f"{server.url}/metrics")).text
                line = next(x for x in text.splitlines() if x.startswith("evstore_live_waiters "))
                return float(line.split()[1]) == n

            first = await client.post(f"{server.url}/streams/Big-0", json=append_body())
            assert first.status_code == 201
            for _ in range(POLLS):  # clients that read slowly: they read only at the end
                poll = socket.socket()
                poll.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                poll.connect((host, int(port)))
                poll.sendall(b"GET /events?after=1&wait=50 HTTP/1.1\r\nHost: x\r\n\r\n")
                polls.append(poll)
            await eventually(lambda: waiters(POLLS), f"{POLLS} long polls waiting")
            baseline = server.rss_bytes()
            big = append_body(*(event_body(data={"blob": BLOB}) for _ in range(EVENTS)))
            assert (await client.post(f"{server.url}/streams/Big-1", json=big)).status_code == 201
            # Woken, then rendered before their first send waits on the slow client;
            # the next request is served after them.
            await eventually(lambda: waiters(0), "every long poll woken")
            grown = server.rss_bytes() - baseline
        bodies = set()
        for poll in polls:
            poll.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MiB)  # read fast now
        for poll in polls:
            poll.settimeout(DEADLINE)
            received = b""
            while not received.endswith(b'"}'):
                part = poll.recv(1 << 16)
                assert part, received[:300]
                received += part
            bodies.add(received.split(b"\r\n\r\n", 1)[1])
    finally:
        for poll in polls:
            poll.close()
    assert len(bodies) == 1
    body = bodies.pop()
    assert body.startswith(b'{"events":[{"id":') and b'"position":2,' in body
    assert len(body) > EVENTS * len(BLOB)
    # With a body per poll, 40 polls of a 12 MB body hold 480 MB or more.
    assert grown < 150 * MiB, grown
