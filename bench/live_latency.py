"""Live delivery: delay from an append to its arrival at every SSE subscriber, and the
server's memory per idle subscriber.

    python -m bench.live_latency --backend postgresql --subscribers 200 1000 --rate 200 20
    python -m bench.live_latency --bare --subscribers 200 --rate 200

The subscribers are raw asyncio protocols (the cheapest client we can write in
Python) in a child process, so that the appender's clock is not held up by their
parsing; all of it runs on the same cores as the server. The appender sends one
single-event append every 1/rate seconds (each in its own task, so a slow append
does not delay the next). Delays are measured with the monotonic clock, shared by
both processes, from the moment the 201 was read ("from 201") and from the moment the
request was sent ("from send").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

from bench.common import database, median, percentile, rss_bytes, server, uvicorn


class Subscriber(asyncio.Protocol):
    """GET /events/live and note the arrival time of every event id."""

    def __init__(
        self, arrivals: dict[int, float], caught_up: asyncio.Event, path: str = "/events/live"
    ) -> None:
        self.path = path
        self.lost = False
        self.arrivals = arrivals
        self.caught_up = caught_up
        self.buffer = b""
        self.in_head = True  # the response head comes first
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        request = f"GET {self.path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
        transport.write(request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buffer = self.buffer + data
        start = 0
        if self.in_head:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            self.in_head = False
            start = end + 4
        # Messages end with a blank line; chunked framing ("4f\r\n") may sit between them.
        while (end := buffer.find(b"\n\n", start)) >= 0:
            block = b"\n" + buffer[start:end]
            start = end + 2
            at = block.find(b"\nid: ") + 1
            if at == 0:
                continue
            if b"event: caught-up" in block:
                self.caught_up.set()
            elif b"event:" not in block:
                stop = block.find(b"\n", at)
                self.arrivals[int(block[at + 4 : stop if stop >= 0 else None])] = now
        self.buffer = buffer[start:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.closed.done():
            self.closed.set_result(None)


def run_child(main: Coroutine[Any, Any, None]) -> None:
    """Run a child process's subscribers on uvloop when it is installed."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(main)


async def connect_subscribers(
    host: str, port: int, count: int, path: str = "/events/live", caught_up_seconds: float = 120
) -> list[tuple[asyncio.Transport, Subscriber]]:
    """`count` subscribers of `path`, connected a batch of 50 at a time (so the
    listen backlog never overflows), once every one of them is caught up."""
    loop = asyncio.get_running_loop()
    connected = []
    for i in range(count):
        connected.append(
            await loop.create_connection(lambda: Subscriber({}, asyncio.Event(), path), host, port)
        )
        if i % 50 == 49:
            await asyncio.sleep(0.02)
    caught_up = (peer.caught_up.wait() for _, peer in connected)
    await asyncio.wait_for(asyncio.gather(*caught_up), caught_up_seconds)
    return connected


def subscriber_process(pipe: Connection, host: str, port: int, count: int) -> None:
    """Child: connect `count` subscribers, say "ready" once all are caught up, then on
    ("done", acks) wait for the last event and answer with the delays."""
    run_child(_subscribers(pipe, host, port, count))


async def _subscribers(pipe: Connection, host: str, port: int, count: int) -> None:
    loop = asyncio.get_running_loop()
    connected = await connect_subscribers(host, port, count)
    arrivals = [peer.arrivals for _, peer in connected]
    transports = [transport for transport, _ in connected]
    pipe.send("ready")
    message = await loop.run_in_executor(None, pipe.recv)
    acks: dict[int, tuple[float, float]] = message[1]
    last = max(acks) if acks else 0
    deadline = time.perf_counter() + 30
    while any(last not in a for a in arrivals) and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    for transport in transports:
        transport.close()
    from_ack: list[float] = []
    from_send: list[float] = []
    missing = 0
    for a in arrivals:
        for position, (sent, acked) in acks.items():
            arrived = a.get(position)
            if arrived is None:
                missing += 1
                continue
            from_ack.append((arrived - acked) * 1000)
            from_send.append((arrived - sent) * 1000)
    pipe.send(
        {
            "deliveries": len(from_ack),
            "missing": missing,
            "p50_ms": percentile(from_ack, 50),
            "p99_ms": percentile(from_ack, 99),
            "max_ms": max(from_ack, default=float("nan")),
            "p50_from_send_ms": percentile(from_send, 50),
            "p99_from_send_ms": percentile(from_send, 99),
        }
    )


@contextmanager
def subscribers(base: str, count: int) -> Iterator[Connection]:
    """A child process holding `count` live subscribers; yields its pipe once they
    are all caught up."""
    host, port = base.removeprefix("http://").split(":")
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=subscriber_process, args=(child, host, int(port), count))
    process.start()
    try:
        if not parent.poll(180) or parent.recv() != "ready":
            raise RuntimeError("the subscribers did not catch up")
        yield parent
    finally:
        process.join(60)
        if process.is_alive():
            process.kill()


def event_body(n: int) -> dict[str, Any]:
    return {"events": [{"type": "Tick", "data": {"n": n, "note": "x" * 100}}]}


async def paced_appends(
    base: str, rate: float, seconds: float, streams: int = 50
) -> tuple[dict[int, tuple[float, float]], dict[str, int]]:
    """Single-event appends at `rate` per second for `seconds` (launched on schedule,
    not after the previous one's answer); returns
    {position: (sent, acknowledged)} and the count of each status."""
    acks: dict[int, tuple[float, float]] = {}
    statuses: dict[str, int] = {}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def one(n: int) -> None:
            sent = time.perf_counter()
            try:
                response = await client.post(f"/streams/Live-{n % streams}", json=event_body(n))
            except httpx.HTTPError as e:
                statuses[type(e).__name__] = statuses.get(type(e).__name__, 0) + 1
                return
            acked = time.perf_counter()
            statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
            if response.status_code == 201:
                acks[response.json()["events"][0]["position"]] = (sent, acked)

        tasks = set()
        start = time.perf_counter()
        n = 0
        total = round(rate * seconds)
        while n < total:
            # Every append that is due by now, however late this loop wakes up.
            due = min(total, int((time.perf_counter() - start) * rate) + 1)
            while n < due:
                task = asyncio.create_task(one(n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
        await asyncio.gather(*tasks)
    return acks, statuses


def measure(base: str, pid: int, count: int, rate: float, seconds: float) -> dict[str, float]:
    """One run against a running server: connect, idle memory, paced appends, delays."""
    before = rss_bytes(pid)
    with subscribers(base, count) as pipe:
        time.sleep(1.0)
        idle = rss_bytes(pid)
        started = time.perf_counter()
        acks, statuses = asyncio.run(paced_appends(base, rate, seconds))
        elapsed = time.perf_counter() - started
        pipe.send(("done", acks))
        if not pipe.poll(120):
            raise RuntimeError("the subscribers did not report")
        result: dict[str, Any] = pipe.recv()
    result.update(
        subscribers=count,
        rate=rate,
        appends=len(acks),
        seconds=elapsed,
        completed_rate=len(acks) / elapsed,
        non_201=sum(v for k, v in statuses.items() if k != "201"),
        statuses=statuses,
        kib_per_idle_subscriber=(idle - before) / count / 1024,
    )
    return result


@contextmanager
def target(backend: str, bare: bool, stderr: Path | None = None) -> Iterator[tuple[str, int]]:
    """A fresh server: evstore on a fresh database, or the bare SSE floor."""
    if bare:
        with uvicorn("bench.bare_sse:app", stderr=stderr) as running:
            yield running
    else:
        with database(backend) as url, server(url, stderr=stderr) as running:
            yield running


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--bare", action="store_true", help="the in-memory SSE floor")
    parser.add_argument("--subscribers", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--rate", type=float, nargs="+", default=[200, 20])
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for count, rate in zip(args.subscribers, args.rate, strict=True):
        runs = []
        for _ in range(args.runs):
            with target(args.backend, args.bare) as (base, pid):
                runs.append(measure(base, pid, count, rate, args.seconds))
        summary = {
            k: median([r[k] for r in runs])
            for k in runs[0]
            if all(isinstance(r[k], int | float) for r in runs)
        }
        print(json.dumps({"backend": "bare" if args.bare else args.backend, **summary}))


if __name__ == "__main__":
    main()
