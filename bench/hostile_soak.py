"""Hostile soak (issue 11): normal appenders alongside hostile clients, against one
`evstore serve` process; the appenders' latency, the server's memory, and the history
checker over everything the appenders wrote.

    python -m bench.hostile_soak --backend postgresql --seconds 60
    python -m bench.hostile_soak --backend sqlite --seconds 60
    python -m bench.hostile_soak --seconds 20 --only invalid_bodies   # one kind alone

Normal clients: APPENDERS single-event appenders on keep-alive httpx connections
(closed loop, each to streams of its own with `If-Match` on the version it knows),
recorded with the history checker (tests/support/history.py).

- Phase A (quiet): the appenders alone for `--seconds`; their per-request latency,
  measured on the client.
- Phase B (hostile): the same appenders for `--seconds` while a child process runs
  every hostile client of the issue:
  1. SLOW_BODIES connections that send the headers of an append with a
     Content-Length and then trickle the body a byte a second (the server answers
     408 after `body_timeout_seconds`); each reconnects after its answer;
  2. a client posting a 4 MiB body in a loop, alternately a million `NaN`s and a
     nesting two million brackets deep (422 with a capped error list);
  3. NON_READERS raw sockets with a tiny SO_RCVBUF asking for a page of 1,000 big
     events (`GET /events?limit=1000`, `GET /streams/Big-seed?limit=1000`) and never
     reading (the server drops them after `send_timeout_seconds`); each holds its
     connection until the server closes it or for HOLD_FACTOR times the timeout
     (the TCP state, from TCP_INFO, tells without reading), then reads what arrived
     (or closes, counted "still open") and reconnects;
  4. SCRAPERS clients reading `/metrics` in a tight loop;
  5. SLOW_SSE subscribers of `/events/live` with a tiny SO_RCVBUF that never read
     (held like 3, against `live_send_timeout_seconds`), and every BURST_PERIOD
     seconds a burst of BURST subscribers connecting at once, held until the next;
  6. a ~1 MB event appended every BIG_EVERY seconds (recorded in the history too)
     while LONG_POLLS long polls wait on `GET /events?after=N&wait=30&category=Big`.
  The server's RSS and open descriptors are sampled every 0.5 s; the CPU time of
  the server and of the two client processes is taken at each phase's ends.
- Then every unknown outcome is settled, the log and the streams are read back, and
  the checker reports what it found: nothing lost, duplicated or reordered, receipts
  matching the log.

The server's three timeouts are set to TIMEOUT_SECONDS (10 s, against 60/30/30 by
default) so that every hostile client goes through several cycles in a phase; the
memory bound does not depend on them (it counts what is in flight at once).

Pass criteria: no checker violation, and the server's peak RSS below RSS_BOUND_MIB
(derived below); the exit status is 1 otherwise. The issue's third criterion, the
appenders' p99 within 3 times that of the quiet run, is reported (`p99_ratio`) but
not enforced: the two shared cores of the benchmark machine carry the server, the
database, the appenders and every hostile client, so the ratio measures the machine
as much as the server.

One JSON line is printed (with every hostile client's answers counted by status and
problem detail, and the server's warning and error lines counted); progress goes to
stderr, the server's log to `--server-log`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import socket
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

from bench.common import database, log, percentile, rss_bytes, server, wait_quiet
from bench.live_latency import run_child
from tests.support.history import (
    RETRY_PAUSE,
    Attempt,
    History,
    Operation,
    Target,
    attempt,
    check,
    read_state,
    settle,
    settle_all,
)

MiB = 1024 * 1024

# --- the clients -----------------------------------------------------------------------

APPENDERS = 8
STREAMS_PER_APPENDER = 4
WARM_UP_SECONDS = 3.0

SLOW_BODIES = 200
SLOW_BODY_LENGTH = 4096  # declared; a byte a second never gets there
INVALID_BODY_BYTES = 4 * MiB - 1024  # under max_body_bytes (4 MiB): parsed, not a 413
NON_READERS = 16  # half on the log, half on a stream
TINY_RCVBUF = 4096  # the kernel doubles it; still a few KiB
HOLD_FACTOR = 3  # a non-reader holds at most this many times the server's timeout
SCRAPERS = 4
SLOW_SSE = 16
BURST = 2000
BURST_PERIOD = 20.0
BIG_EVENT_BYTES = 1_000_000  # under max_event_bytes (1 MiB)
BIG_EVERY = 2.0
BIG_STREAMS = 4
SEED_BIG = 8  # big events written first, so that the first page of the log is ~4 MB
LONG_POLLS = 32
LONG_POLL_WAIT = 30

TIMEOUT_SECONDS = 10.0  # body_timeout, send_timeout and live_send_timeout of the server
HOLD_SECONDS = HOLD_FACTOR * TIMEOUT_SECONDS

# --- the memory bound ------------------------------------------------------------------
# What the server may hold at once under this load, from its limits (app/settings.py,
# defaults) and the clients above. Socket buffers are the kernel's, not in the RSS.
BASELINE_MIB = 120  # `evstore serve` after the seed and phase A: 110 MiB on both backends
LIVE_CACHE_MIB = 64  # live_cache_bytes: the cached events and their rendered messages
BURST_MIB = BURST * 32 // 1024  # 31-32 KiB per idle subscriber (bench/live_scale.py)
PAGE_MIB = 4  # max_page_bytes: the data of one page of big events
# A page is read, parsed and rendered (app/api/pages.py: text, then its bytes): four
# copies at most while it is built; then its body (one copy) and a 256 KiB chunk stay
# while it is sent. The non-readers connect together, so all may be built at once.
PAGES_MIB = NON_READERS * 4 * PAGE_MIB
# A subscriber that stops reading holds what its transport took before flow control
# paused the next send: one message past the high-water mark, a big event at most.
SLOW_SSE_MIB = SLOW_SSE * 1
LONG_POLLS_MIB = 4 * PAGE_MIB  # one page built for every long poll woken by an event
# The invalid body in flight: the 4 MiB read and a copy parsed off the loop, and the
# parsed document (a million floats: 24 bytes each and 8 in the list, 32 MiB).
INVALID_MIB = 2 * 4 + 32
BIG_APPEND_MIB = 4  # the body, its parse and the batch of one big append
SLOW_BODIES_MIB = SLOW_BODIES * 64 // 1024  # a connection's protocol, parser and buffer
RSS_BOUND_MIB = (
    BASELINE_MIB
    + LIVE_CACHE_MIB
    + BURST_MIB
    + PAGES_MIB
    + SLOW_SSE_MIB
    + LONG_POLLS_MIB
    + INVALID_MIB
    + BIG_APPEND_MIB
    + SLOW_BODIES_MIB
)  # 590 MiB

HOSTILE_KINDS = [
    "slow_bodies",
    "invalid_bodies",
    "page_non_readers",
    "scrapers",
    "sse_non_readers",
    "bursts",
    "big_events",  # the big appender and the long polls
]

ESTABLISHED, CLOSE_WAIT, CLOSE = 1, 8, 7  # tcp_info.tcpi_state (linux/tcp_states.h)


# --- the appenders (parent process) ----------------------------------------------------


@dataclass
class Appenders:
    history: History
    target: Target
    known: dict[str, int] = field(default_factory=dict)  # stream -> version acknowledged
    sent: int = 0

    def operation(self, index: int) -> Operation:
        self.sent += 1
        stream = f"Normal-{index}-{self.sent % STREAMS_PER_APPENDER}"
        event = {"id": str(uuid.uuid4()), "type": "Appended", "data": {"n": self.sent}}
        headers = {"If-Match": f'"{self.known.get(stream, 0)}"'}
        op = Operation(stream, [event], headers)
        self.history.operations.append(op)
        return op

    async def one(
        self, client: httpx.AsyncClient, index: int, stop: asyncio.Event, phase: Phase
    ) -> None:
        while not stop.is_set():
            op = self.operation(index)
            last = await self.send(client, op, phase)
            while last.outcome == "unknown" and not stop.is_set():
                await asyncio.sleep(RETRY_PAUSE)
                last = await self.send(client, op, phase)
            if last.receipt:
                self.known[op.stream_id] = last.receipt[-1][1]
            elif last.current_version is not None:
                self.known[op.stream_id] = last.current_version

    async def send(self, client: httpx.AsyncClient, op: Operation, phase: Phase) -> Attempt:
        result = await attempt(client, self.target, op)
        phase.latencies.append((result.finished - result.started) * 1000)
        phase.statuses[str(result.status or result.error)] += 1
        return result

    async def run(self, client: httpx.AsyncClient, seconds: float, phase: Phase) -> None:
        stop = asyncio.Event()
        began = time.monotonic()
        tasks = [asyncio.create_task(self.one(client, i, stop, phase)) for i in range(APPENDERS)]
        await asyncio.sleep(seconds)  # the phase's duration
        stop.set()  # each finishes its current append (unknowns settle at the end)
        await asyncio.gather(*tasks)
        phase.seconds = time.monotonic() - began


@dataclass
class Phase:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def figures(self) -> dict[str, Any]:
        return {
            "appends": len(self.latencies),
            "per_s": round(len(self.latencies) / self.seconds, 1) if self.seconds else None,
            "p50_ms": round(percentile(self.latencies, 50), 2),
            "p99_ms": round(percentile(self.latencies, 99), 2),
            "statuses": dict(self.statuses),
        }


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Samples:
    """The server's RSS and open descriptors, every 0.5 s, by phase; the CPU time of
    the server and of the benchmark's processes in each phase."""

    pid: int
    phase: str = "warm-up"
    rss: dict[str, int] = field(default_factory=dict)  # phase -> peak bytes
    fds: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)  # phase -> who -> s
    marks: dict[str, float] = field(default_factory=dict)  # who -> CPU s at the phase start
    others: dict[str, int] = field(default_factory=dict)  # who -> pid, besides the server
    # phase -> [looks that found a test suite running on the machine, looks]
    tests: dict[str, list[int]] = field(default_factory=dict)

    def enter(self, phase: str) -> None:
        """End the current phase's CPU account and begin `phase`'s."""
        processes = {"server": self.pid, "appenders": os.getpid(), **self.others}
        account = self.cpu.setdefault(self.phase, {})
        for who, pid in processes.items():
            now = cpu_seconds(pid)
            if not now:
                continue  # gone
            if who in self.marks:
                account[who] = round(account.get(who, 0.0) + now - self.marks[who], 1)
            self.marks[who] = now
        self.take()
        self.phase = phase

    def take(self) -> None:
        rss = rss_bytes(self.pid)
        try:
            fds = len(os.listdir(f"/proc/{self.pid}/fd"))
        except FileNotFoundError:
            fds = 0
        self.rss[self.phase] = max(self.rss.get(self.phase, 0), rss)
        self.fds[self.phase] = max(self.fds.get(self.phase, 0), fds)

    async def run(self) -> None:
        n = 0
        while True:
            self.take()
            if n % 10 == 0:  # every 5 s: does a test suite share the cores?
                found = await asyncio.create_subprocess_exec(
                    "pgrep", "-f", "pytest", stdout=asyncio.subprocess.DEVNULL
                )
                seen = self.tests.setdefault(self.phase, [0, 0])
                seen[0] += await found.wait() == 0
                seen[1] += 1
            n += 1
            await asyncio.sleep(0.5)  # the sampling interval


# --- the hostile clients (child process) -----------------------------------------------


def tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def peek(sock: socket.socket) -> bytes:
    """The first bytes waiting in the socket, left there."""
    try:
        return sock.recv(64, socket.MSG_PEEK)
    except BlockingIOError:
        return b""


def status_of(raw: bytes) -> str:
    """The status code of a raw HTTP answer, or why there is none."""
    if not raw:
        return "no answer"
    line = raw.split(b"\r\n", 1)[0].split(b" ")
    return line[1].decode() if len(line) > 1 and line[1].isdigit() else "garbled"


def answer_of(raw: bytes) -> str:
    """The status of a raw HTTP answer, with the problem's detail when it is one."""
    status = status_of(raw)
    if not status.isdigit() or status.startswith("2"):
        return status
    body = raw.partition(b"\r\n\r\n")[2]
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        return status
    return f"{status} {str(detail)[:80]}" if detail else status


def outcome_of(response: httpx.Response) -> str:
    """The same for an httpx response (the body is read already)."""
    status = str(response.status_code)
    if response.is_success or "json" not in response.headers.get("content-type", ""):
        return status
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return status
    return f"{status} {str(detail)[:80]}" if detail else status


def body_complete(raw: bytes) -> bool:
    head, _, body = raw.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return body.endswith(b"0\r\n\r\n")  # chunked: the last chunk arrived


def big_event(n: int) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "type": "Big", "data": {"n": n, "blob": "b" * BIG_EVENT_BYTES}}


@dataclass
class Hostile:
    host: str
    port: int
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=dict)  # time to the server's close
    bursts: list[dict[str, Any]] = field(default_factory=list)
    operations: list[Operation] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: int = 0
    all_started: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0

    def count(self, kind: str, outcome: str) -> None:
        self.counts.setdefault(kind, Counter())[outcome] += 1

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def raw_socket(self, rcvbuf: int | None = None) -> socket.socket:
        sock = socket.socket()
        if rcvbuf is not None:  # before connecting, so the window is small from the start
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (self.host, self.port))
        except OSError:
            sock.close()
            raise
        return sock

    async def drain(self, sock: socket.socket) -> bytes:
        """What the server sent, up to its close (bounded: a hung server is an answer)."""
        loop = asyncio.get_running_loop()
        received = b""
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(30):
                while chunk := await loop.sock_recv(sock, 1 << 20):
                    received += chunk
        return received

    def starter(self) -> Callable[[], None]:
        """A callback for one client to say it is up (connected, or answered); once
        every client has said so, `all_started` is set. Calling it again is harmless."""
        said = False

        def up() -> None:
            nonlocal said
            if not said:
                said = True
                self.arrived += 1
                if self.arrived == self.expected:
                    self.all_started.set()

        return up

    async def forever(
        self, kind: str, cycle: Callable[[Callable[[], None]], Awaitable[None]]
    ) -> None:
        """Run `cycle` again and again; a connection error is counted, not fatal."""
        up = self.starter()
        while not self.stop.is_set():
            try:
                await cycle(up)
            except OSError as e:
                self.count(kind, f"error {type(e).__name__}")
                up()
                await asyncio.sleep(0.1)  # before reconnecting

    # 1. slow bodies
    async def slow_body(self, index: int) -> None:
        head = (
            f"POST /streams/Slow-{index} HTTP/1.1\r\nHost: bench\r\n"
            f"Content-Type: application/json\r\nContent-Length: {SLOW_BODY_LENGTH}\r\n\r\n"
        ).encode()

        async def cycle(up: Callable[[], None]) -> None:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            try:
                up()
                opened = time.monotonic()
                writer.write(head)
                answer = asyncio.ensure_future(reader.read(1))
                # A byte a second, half a second off the deadline's beat (armed by the
                # headers), and none once the answer has begun: a byte that reaches
                # the closed socket would be answered with a reset that can discard
                # the 408 before it is read.
                pause = 0.5
                while not answer.done():
                    await asyncio.wait([answer], timeout=pause)
                    pause = 1.0
                    if not answer.done() and not writer.is_closing():
                        writer.write(b" ")
                raw = answer.result() + await reader.read()
                self.count("slow_body", answer_of(raw))
                self.seconds.setdefault("slow_body", []).append(time.monotonic() - opened)
            finally:
                writer.close()

        await self.forever("slow_body", cycle)

    # 2. invalid 4 MiB bodies
    async def invalid_bodies(self) -> None:
        nans = b"NaN," * ((INVALID_BODY_BYTES - 64) // 4)
        depth = (INVALID_BODY_BYTES - 64) // 2
        bodies = {
            "nan": b'{"events": [{"type": "T", "data": [' + nans + b"0]}]}",
            "deep": b'{"events": [{"type": "T", "data": ' + b"[" * depth + b"]" * depth + b"}]}",
        }
        headers = {"Content-Type": "application/json"}
        up = self.starter()
        async with httpx.AsyncClient(base_url=self.base, timeout=60) as client:
            n = 0
            while not self.stop.is_set():
                name = "nan" if n % 2 == 0 else "deep"
                n += 1
                try:
                    response = await client.post(
                        "/streams/Invalid-1", content=bodies[name], headers=headers
                    )
                except httpx.HTTPError as e:
                    self.count(f"invalid_{name}", f"error {type(e).__name__}")
                    continue
                finally:
                    up()
                outcome = str(response.status_code)  # the detail names the count of NaNs
                if response.status_code == 422 and len(response.content) > 64 * 1024:
                    outcome += " (uncapped)"
                self.count(f"invalid_{name}", outcome)

    # 3. big pages never read; 5a. live streams never read
    async def non_reader(self, kind: str, path: str) -> None:
        request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
        loop = asyncio.get_running_loop()

        async def cycle(up: Callable[[], None]) -> None:
            sock = await self.raw_socket(TINY_RCVBUF)
            try:
                await loop.sock_sendall(sock, request)
                up()
                opened = time.monotonic()
                until = opened + HOLD_SECONDS
                answered = False
                # Holding without reading is the behaviour: the TCP state and a peek at
                # the first bytes (which reads nothing) have no event to wait on.
                while tcp_state(sock) == ESTABLISHED and time.monotonic() < until:
                    if not answered and peek(sock):
                        answered = True
                        self.seconds.setdefault(f"{kind}_answer", []).append(
                            time.monotonic() - opened
                        )
                    await asyncio.sleep(0.5)
                state = tcp_state(sock)
                if state == ESTABLISHED:
                    outcome = status_of(peek(sock))
                    self.count(kind, f"{outcome} still open after {HOLD_SECONDS:g}s")
                    return
                self.seconds.setdefault(kind, []).append(time.monotonic() - opened)
                raw = await self.drain(sock)
                how = "closed" if state == CLOSE_WAIT else "reset"
                cut = "whole" if body_complete(raw) else "cut short"
                self.count(kind, f"{status_of(raw)} {cut}, {how} by the server")
            finally:
                sock.close()

        await self.forever(kind, cycle)

    # 4. /metrics in a tight loop
    async def scraper(self) -> None:
        up = self.starter()
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as client:
            while not self.stop.is_set():
                try:
                    response = await client.get("/metrics")
                    self.count("metrics", outcome_of(response))
                except httpx.HTTPError as e:
                    self.count("metrics", f"error {type(e).__name__}")
                up()

    # 5b. bursts of subscribers
    async def bursts_of_subscribers(self) -> None:
        up = self.starter()
        while not self.stop.is_set():
            began = time.monotonic()
            held = await burst(self.host, self.port, BURST, "/events/live?category=Nowhere")
            self.bursts.append(held.figures())
            for kind, n in held.statuses.items():
                self.counts.setdefault("burst", Counter())[kind] += n
            up()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, began + BURST_PERIOD - time.monotonic())):
                    await self.stop.wait()  # hold the burst until the next one
            held.close()

    # 6a. big events now and then
    async def big_appender(self) -> None:
        target = Target(self.base)
        up = self.starter()
        async with httpx.AsyncClient(timeout=60) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                op = Operation(f"Big-{n % BIG_STREAMS}", [big_event(n)], {})
                self.operations.append(op)
                last = await settle(client, target, op, time.monotonic() + 30)
                self.count("big_append", str(last.status or last.error))
                up()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(BIG_EVERY):
                        await self.stop.wait()  # the pace of big events

    # 6b. long polls waiting for them
    async def long_poll(self) -> None:
        up = self.starter()
        async with httpx.AsyncClient(base_url=self.base, timeout=LONG_POLL_WAIT + 30) as client:
            after: int | None = None
            while not self.stop.is_set():
                params: dict[str, Any] = {"wait": LONG_POLL_WAIT, "category": "Big"}
                if after is None:  # first the head: a page that matches nothing
                    params = {"limit": 1, "category": "Nowhere"}
                else:
                    params["after"] = after
                try:
                    response = await client.get("/events", params=params)
                except httpx.HTTPError as e:
                    self.count("long_poll", f"error {type(e).__name__}")
                    await asyncio.sleep(0.1)  # before trying again
                    continue
                finally:
                    up()
                if response.status_code != 200:
                    self.count("long_poll", outcome_of(response))
                    await asyncio.sleep(0.1)  # before trying again
                    continue
                page = response.json()
                if after is None:
                    after = page["head"]
                    continue
                self.count("long_poll", f"200 {'events' if page['events'] else 'empty'}")
                after = page["next_after"]

    def clients(self, kind: str) -> list[Awaitable[None]]:
        """The clients of one kind of HOSTILE_KINDS (the big appender is started apart:
        it finishes its append at the end instead of being cancelled)."""
        if kind == "slow_bodies":
            return [self.slow_body(i) for i in range(SLOW_BODIES)]
        if kind == "invalid_bodies":
            return [self.invalid_bodies()]
        if kind == "page_non_readers":
            paths = ["/events?limit=1000", "/streams/Big-seed?limit=1000"]
            return [self.non_reader("page_non_reader", paths[i % 2]) for i in range(NON_READERS)]
        if kind == "scrapers":
            return [self.scraper() for _ in range(SCRAPERS)]
        if kind == "sse_non_readers":
            return [self.non_reader("sse_non_reader", "/events/live") for _ in range(SLOW_SSE)]
        if kind == "bursts":
            return [self.bursts_of_subscribers()]
        assert kind == "big_events"
        return [self.long_poll() for _ in range(LONG_POLLS)]

    async def run(self, pipe: Connection, kinds: list[str]) -> None:
        loop = asyncio.get_running_loop()
        clients = [c for kind in kinds for c in self.clients(kind)]
        big = [self.big_appender()] if "big_events" in kinds else []
        self.expected = len(clients) + len(big)
        tasks = [asyncio.ensure_future(c) for c in clients]
        finishing = [asyncio.ensure_future(c) for c in big]
        async with asyncio.timeout(120):
            await self.all_started.wait()
        pipe.send("ready")
        await loop.run_in_executor(None, pipe.recv)  # "stop"
        self.stop.set()
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*finishing, *tasks, return_exceptions=True)
        failures = [r for r in results if isinstance(r, Exception)]
        pipe.send(
            {
                "counts": {k: dict(v) for k, v in self.counts.items()},
                # [min, max] seconds to the server's close (kind) or first byte (_answer)
                "seconds": {
                    k: [round(min(v), 1), round(max(v), 1)] for k, v in self.seconds.items()
                },
                "bursts": self.bursts,
                "operations": self.operations,
                "failures": [repr(f) for f in failures],
            }
        )


@dataclass
class Burst:
    """Subscribers that connected at once: their statuses and how long it took."""

    transports: list[asyncio.BaseTransport]
    statuses: Counter[str]
    connected: float  # seconds from the start to the last TCP connection made (or refused)
    answers: list[float]  # seconds from the start to each status line
    seconds: float  # from the start to the last status line (or failure)

    def figures(self) -> dict[str, Any]:
        return {
            "statuses": dict(self.statuses),
            "seconds_to_all_connected": round(self.connected, 2),
            "seconds_to_answer_p50": round(percentile(self.answers, 50), 2),
            "seconds_to_answer_p99": round(percentile(self.answers, 99), 2),
            "seconds_to_all_answered": round(self.seconds, 2),
        }

    def close(self) -> None:
        for transport in self.transports:
            transport.close()


class BurstSubscriber(asyncio.Protocol):
    """Sends its request and notes when its status line arrives; keeps the whole answer
    when it is not a 200 (a problem, then the close), else discards what arrives."""

    def __init__(self, request: bytes, answered: asyncio.Future[None]) -> None:
        self.request = request
        self.answered = answered
        self.received = b""
        self.streaming = False
        self.lost = False
        self.lost_to = ""  # the error that ended the connection, if any
        self.answered_at = 0.0  # time.monotonic() of the status line
        # Set once the outcome is final: the stream has begun, or the connection is gone.
        self.settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.streaming:
            return
        self.received += data
        if b"\r\n" in self.received and not self.answered.done():
            self.answered_at = time.monotonic()
            self.streaming = status_of(self.received) == "200"
            self.answered.set_result(None)
            if self.streaming:
                self.settled.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.lost_to = type(exc).__name__ if exc else ""
        for future in (self.answered, self.settled):
            if not future.done():
                future.set_result(None)

    @property
    def outcome(self) -> str:
        if self.streaming:
            return "200"
        if not self.received:
            if not self.lost:
                return "no answer in time"
            return f"closed unanswered ({self.lost_to})" if self.lost_to else "closed unanswered"
        return answer_of(self.received)


async def burst(host: str, port: int, count: int, path: str, seconds: float = 120) -> Burst:
    """`count` subscribers of `path` connecting all at once (no pacing)."""
    loop = asyncio.get_running_loop()
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    answers: list[asyncio.Future[None]] = [loop.create_future() for _ in range(count)]
    errors: Counter[str] = Counter()
    began = time.monotonic()

    async def connect(
        answered: asyncio.Future[None],
    ) -> tuple[asyncio.BaseTransport, BurstSubscriber] | None:
        try:
            return await loop.create_connection(
                lambda: BurstSubscriber(request, answered), host, port
            )
        except OSError as e:
            errors[f"error {type(e).__name__}"] += 1
            answered.set_result(None)
            return None

    connected = [c for c in await asyncio.gather(*(connect(a) for a in answers)) if c]
    all_connected = time.monotonic() - began
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await asyncio.gather(*answers)
    took = time.monotonic() - began
    with contextlib.suppress(TimeoutError):  # the refused ones: their problem, then the close
        async with asyncio.timeout(5):
            await asyncio.gather(*(peer.settled for _, peer in connected))
    statuses = errors + Counter(peer.outcome for _, peer in connected)
    answered = [peer.answered_at - began for _, peer in connected if peer.answered_at]
    return Burst([t for t, _ in connected], statuses, all_connected, answered, took)


def hostile_process(pipe: Connection, host: str, port: int, kinds: list[str]) -> None:
    run_child(Hostile(host, port).run(pipe, kinds))


# --- the run ---------------------------------------------------------------------------


async def soak(base: str, pid: int, seconds: float, kinds: list[str]) -> dict[str, Any]:
    history = History()
    target = Target(base)
    appenders = Appenders(history, target)
    samples = Samples(pid)
    sampler = asyncio.create_task(samples.run())
    loop = asyncio.get_running_loop()
    limits = httpx.Limits(max_connections=APPENDERS, max_keepalive_connections=APPENDERS)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        log(f"seeding {SEED_BIG} big events")
        for n in range(SEED_BIG):
            op = Operation("Big-seed", [big_event(n)], {})
            history.operations.append(op)
            await settle(client, target, op, time.monotonic() + 30)
        await appenders.run(client, WARM_UP_SECONDS, Phase())
        quiet, hostile = Phase(), Phase()
        log(f"phase A: {APPENDERS} appenders alone for {seconds:g} s")
        samples.enter("quiet")
        await appenders.run(client, seconds, quiet)
        samples.enter("start")
        await asyncio.to_thread(wait_quiet)  # a test suite that began meanwhile
        host, port = base.removeprefix("http://").split(":")
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(target=hostile_process, args=(child, host, int(port), kinds))
        process.start()
        assert process.pid is not None
        samples.others["hostile"] = process.pid
        try:
            if not await loop.run_in_executor(None, parent.poll, 180):
                raise RuntimeError("the hostile clients did not start")
            if parent.recv() != "ready":
                raise RuntimeError("the hostile clients did not start")
            log(f"phase B: the appenders with the hostile clients for {seconds:g} s")
            samples.enter("hostile")
            await appenders.run(client, seconds, hostile)
            samples.enter("after")
            parent.send("stop")
            if not await loop.run_in_executor(None, parent.poll, 120):
                raise RuntimeError("the hostile clients did not report")
            report: dict[str, Any] = parent.recv()
            samples.enter("check")
        finally:
            process.join(60)
            if process.is_alive():
                process.kill()
        history.operations += report.pop("operations")
        log("settling and checking", history.summary())
        await settle_all(client, target, history, 60)
        state = await read_state(client, base)
    samples.enter("end")
    sampler.cancel()
    violations = check(history, state)
    ratio = hostile.figures()["p99_ms"] / quiet.figures()["p99_ms"]
    # Hostile clients run from "start" (connecting) until they have stopped ("after").
    under_load = max(samples.rss.get(p, 0) for p in ("start", "hostile", "after"))
    return {
        "quiet": quiet.figures(),
        "hostile": hostile.figures(),
        "p99_ratio": round(ratio, 2),
        "rss_quiet_peak_mib": round(samples.rss["quiet"] / MiB, 1),
        "rss_peak_mib": round(under_load / MiB, 1),
        "rss_bound_mib": RSS_BOUND_MIB,
        "rss_peak_by_phase_mib": {k: round(v / MiB, 1) for k, v in samples.rss.items()},
        "fds_peak_by_phase": samples.fds,
        "cpu_seconds_by_phase": {k: v for k, v in samples.cpu.items() if v},
        "test_suite_seen_by_phase": {k: f"{v[0]}/{v[1]}" for k, v in samples.tests.items()},
        "log_events": len(state.log),
        "operations": len(history.operations),
        "violations": len(violations),
        "violation_examples": violations[:10],
        **report,
    }


def server_log_summary(text: str) -> dict[str, int]:
    """The server's log lines at warning and above, counted by logger, level, message
    and (for an error with a traceback) the traceback's last line."""
    lines: Counter[str] = Counter()
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            lines[f"(not JSON) {line[:100]}"] += 1
            continue
        if entry.get("level") in ("debug", "info"):
            continue  # the access lines of --server-log-level info
        key = f"{entry.get('level')} {entry.get('logger')}: {entry.get('message', '')[:100]}"
        error = entry.get("error")
        if error:
            key += " | " + error.strip().splitlines()[-1][:160]
        lines[key] += 1
    return dict(lines.most_common())


def measure(
    backend: str, seconds: float, server_log: Path, kinds: list[str], log_level: str
) -> dict[str, Any]:
    wait_quiet()
    server_log.unlink(missing_ok=True)
    with (
        database(backend) as url,
        server(
            url,
            stderr=server_log,
            body_timeout_seconds=TIMEOUT_SECONDS,
            send_timeout_seconds=TIMEOUT_SECONDS,
            live_send_timeout_seconds=TIMEOUT_SECONDS,
            log_level=log_level,
        ) as (base, pid),
    ):
        result = asyncio.run(soak(base, pid, seconds, kinds))
    result["server_log"] = server_log_summary(server_log.read_text(errors="replace"))
    result["server_log_file"] = str(server_log)
    passed = result["violations"] == 0 and result["rss_peak_mib"] <= RSS_BOUND_MIB
    return {
        "backend": backend,
        "seconds": seconds,
        "hostile_kinds": kinds,
        "passed": passed,
        **result,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument(
        "--server-log",
        type=Path,
        default=None,
        help="where the server's stderr goes (default: a file in the temporary directory)",
    )
    parser.add_argument(
        "--server-log-level",
        default="warning",
        choices=["warning", "info"],
        help="info: the server logs an access line per request (duration, status)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=HOSTILE_KINDS,
        default=HOSTILE_KINDS,
        help="run only these hostile clients in phase B (to attribute a cost); the bound "
        "is the one of the whole load",
    )
    args = parser.parse_args()
    folder = Path(tempfile.gettempdir())
    server_log = args.server_log or folder / f"evstore-hostile-soak-{args.backend}.log"
    result = measure(args.backend, args.seconds, server_log, args.only, args.server_log_level)
    print(json.dumps(result), flush=True)
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
