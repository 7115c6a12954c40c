"""A history checker: workloads record every append attempt, and after the run the
final log, the streams and the SSE deliveries are checked against what was acknowledged.

An operation is one logical append (stream, event ids, precondition headers). Each HTTP
try of it is an attempt with an outcome:
- ok: 2xx with a receipt (201 written, 200 an idempotent replay of the original);
- failed: a 4xx problem; that attempt wrote nothing;
- unknown: a timeout, a connection error or a 5xx; the attempt may or may not have
  committed.
Clients retry unknown outcomes with the same ids and the same precondition headers;
appends are idempotent by event id, so that is safe. The operation's outcome is ok
when any attempt was ok, failed when every attempt failed, and unknown otherwise (a 4xx
after an unknown attempt does not prove the earlier attempt wrote nothing).

`check` is pure: it takes the history, the whole log, each stream as read over HTTP and
the SSE connections, and returns every violation found as a line of text:
- no lost acknowledged event: every ok receipt's ids sit in the log at its positions,
  versions and stream; all ok attempts of one operation got the same receipt;
- a 201 receipt respects the precondition that was sent;
- nothing from a failed operation; unknown operations all or nothing, and when present
  at consecutive versions and positions of their stream;
- no event in the log that no operation sent; sent type and data come back unchanged;
- no duplicate ids, versions 1..n per stream, positions 1..head with no holes;
- the log projected onto each stream equals the stream read via GET /streams/{id};
- SSE: each connection's deliveries strictly increasing from its start position with
  nothing skipped and equal to the log, and a subscriber's reconnections resume where
  the previous connection stopped.
`read_state` fetches the log and the streams through the API.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from tests.support.sse_client import messages

Outcome = Literal["ok", "failed", "unknown"]
Event = dict[str, Any]
RETRY_PAUSE = 0.02  # backoff between retries of an unknown outcome


@dataclass
class Attempt:
    outcome: Outcome
    status: int | None  # None: no HTTP answer (timeout, connection error)
    started: float  # time.monotonic()
    finished: float
    receipt: list[tuple[str, int, int]] | None = None  # (id, version, position)
    error: str = ""  # problem slug or exception name
    retry_after: str | None = None
    current_version: int | None = None  # from a 412 problem


@dataclass
class Operation:
    stream_id: str
    events: list[Event]  # the request body's events, as sent
    headers: dict[str, str]  # the precondition, sent again on every retry
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [e["id"] for e in self.events]

    @property
    def outcome(self) -> Outcome:
        kinds = {a.outcome for a in self.attempts}
        if "ok" in kinds:
            return "ok"
        return "unknown" if "unknown" in kinds or not kinds else "failed"

    @property
    def settled(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].outcome != "unknown"


@dataclass
class SseConnection:
    start: int  # deliveries must begin right after this position
    positions: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class Subscriber:
    connections: list[SseConnection] = field(default_factory=list)

    @property
    def position(self) -> int:
        """The last position delivered over any connection (or the first start)."""
        for connection in reversed(self.connections):
            if connection.positions:
                return connection.positions[-1]
        return self.connections[0].start if self.connections else 0


@dataclass
class History:
    operations: list[Operation] = field(default_factory=list)
    subscribers: list[Subscriber] = field(default_factory=list)

    def attempts(self) -> list[Attempt]:
        return [a for op in self.operations for a in op.attempts]

    def acknowledged(self) -> int:
        return sum(1 for op in self.operations if op.outcome == "ok")

    def statuses(self) -> Counter[int | None]:
        return Counter(a.status for a in self.attempts())

    def summary(self) -> str:
        outcomes = Counter(op.outcome for op in self.operations)
        return f"{len(self.operations)} operations {dict(outcomes)}, statuses {self.statuses()}"


@dataclass
class State:
    log: list[Event]
    head: int
    streams: dict[str, list[Event]]  # as read via GET /streams/{id}


# --- recording ----------------------------------------------------------------------


class Target:
    """Where requests go; a test that restarts the server on a new port moves it."""

    def __init__(self, url: str) -> None:
        self.url = url


async def attempt(client: httpx.AsyncClient, target: Target, op: Operation) -> Attempt:
    """Send `op` once and record the outcome."""
    started = time.monotonic()
    body = {"events": op.events}
    try:
        response = await client.post(
            f"{target.url}/streams/{op.stream_id}", json=body, headers=op.headers
        )
    except (httpx.TransportError, httpx.TimeoutException) as e:
        result = Attempt("unknown", None, started, time.monotonic(), error=type(e).__name__)
    else:
        result = classify(response, started)
    op.attempts.append(result)
    return result


def classify(response: httpx.Response, started: float) -> Attempt:
    status = response.status_code
    finished = time.monotonic()
    if 200 <= status < 300:
        receipt = [(e["id"], e["version"], e["position"]) for e in response.json()["events"]]
        return Attempt("ok", status, started, finished, receipt=receipt)
    problem: dict[str, Any] = {}
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        problem = response.json()
    return Attempt(
        "failed" if 400 <= status < 500 else "unknown",
        status,
        started,
        finished,
        error=str(problem.get("type", "")),
        retry_after=response.headers.get("retry-after"),
        current_version=problem.get("current_version"),
    )


async def settle(
    client: httpx.AsyncClient, target: Target, op: Operation, deadline: float
) -> Attempt:
    """Retry `op` (same ids, same headers) until its outcome is known or the deadline."""
    last = await attempt(client, target, op)
    while last.outcome == "unknown" and time.monotonic() < deadline:
        await asyncio.sleep(RETRY_PAUSE)
        last = await attempt(client, target, op)
    return last


async def settle_all(
    client: httpx.AsyncClient, target: Target, history: History, seconds: float = 30
) -> None:
    """Retry every operation whose last attempt had an unknown outcome."""
    deadline = time.monotonic() + seconds
    for op in history.operations:
        if op.attempts and not op.settled:
            last = await settle(client, target, op, deadline)
            assert last.outcome != "unknown", f"{op.stream_id}: still unknown: {last}"


# --- a randomized workload ----------------------------------------------------------


@dataclass
class Workload:
    """Writers appending 1 to 3 events to a few streams with random preconditions;
    some requests are invalid (a definite 4xx), some are deliberate retries of an
    acknowledged operation (a 200 replay with the original receipt)."""

    history: History
    rng: random.Random
    streams: int = 6
    prefix: str = "Order"
    cancel_probability: float = 0.0  # in-process: abandon a request mid-flight
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    stop_deadline: float = float("inf")  # after `stop`, give up retrying at this time

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def new_operation(self, known: dict[str, int]) -> Operation:
        rng = self.rng
        stream_id = f"{self.prefix}-{rng.randrange(self.streams)}"
        events = [
            {"id": self.new_id(), "type": rng.choice(["Placed", "Paid"]), "data": {"n": i}}
            for i in range(rng.randint(1, 3))
        ]
        roll = rng.random()
        headers: dict[str, str] = {}
        if roll < 0.3:
            headers["If-Match"] = f'"{known.get(stream_id, 0)}"'
        elif roll < 0.4:
            headers["If-None-Match"] = "*"
        elif roll < 0.5:
            headers["If-Match"] = "*"
        elif roll < 0.54 and len(events) > 1:
            events[1]["id"] = events[0]["id"]  # two events with one id: 422
        op = Operation(stream_id, events, headers)
        self.history.operations.append(op)
        return op

    async def writer(self, client: httpx.AsyncClient, target: Target, count: int | None) -> None:
        """Append `count` operations (or until `stop` is set); settle unknown outcomes
        by retrying; learn stream versions from receipts and 412 answers."""
        known: dict[str, int] = {}
        done: list[Operation] = []
        n = 0
        while (count is None or n < count) and not self.stop.is_set():
            n += 1
            if done and self.rng.random() < 0.05:
                op = self.rng.choice(done)  # a deliberate retry of an acknowledged append
            else:
                op = self.new_operation(known)
            last = await self._send(client, target, op)
            while last.outcome == "unknown":
                await asyncio.sleep(RETRY_PAUSE)
                if self.stop.is_set() and time.monotonic() > self.stop_deadline:
                    break
                last = await self._send(client, target, op)
            if last.receipt:
                known[op.stream_id] = last.receipt[-1][1]
                done.append(op)
            elif last.current_version is not None:
                known[op.stream_id] = last.current_version

    async def _send(self, client: httpx.AsyncClient, target: Target, op: Operation) -> Attempt:
        if self.cancel_probability and self.rng.random() < self.cancel_probability:
            started = time.monotonic()
            try:  # a client that gives up early: the append may still commit
                return await asyncio.wait_for(attempt(client, target, op), self.rng.random() / 200)
            except TimeoutError:
                abandoned = Attempt("unknown", None, started, time.monotonic(), error="abandoned")
                op.attempts.append(abandoned)
                return abandoned
        return await attempt(client, target, op)

    async def run(
        self, clients: list[httpx.AsyncClient], target: Target, writers: int, count: int | None
    ) -> None:
        async with asyncio.TaskGroup() as group:
            for i in range(writers):
                group.create_task(self.writer(clients[i % len(clients)], target, count))

    def finish(self, grace: float = 30) -> None:
        """Ask the writers to stop after their current operation (retrying it at most
        `grace` seconds)."""
        self.stop_deadline = time.monotonic() + grace
        self.stop.set()


# --- SSE subscribers ----------------------------------------------------------------


async def follow(client: httpx.AsyncClient, target: Target, subscriber: Subscriber) -> None:
    """Follow /events/live from position 0, reconnecting with Last-Event-ID after any
    failure, until cancelled. Every connection is recorded."""
    while True:
        connection = SseConnection(start=subscriber.position)
        subscriber.connections.append(connection)
        headers = {"Last-Event-ID": str(connection.start)}
        try:
            async with client.stream(
                "GET", f"{target.url}/events/live", headers=headers
            ) as response:
                if response.status_code != 200:
                    connection.error = f"status {response.status_code}"
                    await response.aread()
                else:
                    async for message in messages(response):
                        if message.event is None and message.data:
                            connection.positions.append(message.position)
                            connection.ids.append(message.json["id"])
                    connection.error = "ended"
        except (httpx.TransportError, httpx.TimeoutException) as e:
            connection.error = type(e).__name__
        await asyncio.sleep(RETRY_PAUSE * 5)  # reconnect backoff


async def wait_for(check: Callable[[], bool], what: str, seconds: float = 30) -> None:
    """Poll an observable condition until it holds, or fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(0.01)  # poll interval


async def wait_acknowledged(history: History, more: int, seconds: float = 30) -> None:
    """Wait until `more` further operations have been acknowledged."""
    wanted = history.acknowledged() + more
    await wait_for(lambda: history.acknowledged() >= wanted, f"{more} appends", seconds)


async def wait_success_since(history: History, since: float, what: str, seconds: float) -> None:
    """Wait until an append attempt started at or after `since` has succeeded."""
    await wait_for(
        lambda: any(a.receipt and a.started >= since for a in history.attempts()), what, seconds
    )


# --- reading the final state ---------------------------------------------------------


async def read_state(client: httpx.AsyncClient, base: str = "") -> State:
    log: list[Event] = []
    after, head = 0, 0
    while True:
        response = await client.get(f"{base}/events", params={"after": after, "limit": 1000})
        assert response.status_code == 200, response.text
        page = response.json()
        log += page["events"]
        head = max(head, page["head"])
        if not page["events"]:
            break
        after = page["events"][-1]["position"]
    streams: dict[str, list[Event]] = {}
    for stream_id in sorted({e["stream_id"] for e in log}):
        events: list[Event] = []
        while True:
            params = {"from": len(events) + 1, "limit": 1000}
            response = await client.get(f"{base}/streams/{stream_id}", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            events += page["events"]
            # A page bounded in bytes (max_page_bytes) is short before the end: follow
            # the next link, not the page's length.
            if page["next"] is None or not page["events"]:
                break
        streams[stream_id] = events
    return State(log, head, streams)


# --- the checks ----------------------------------------------------------------------


def check(history: History, state: State) -> list[str]:
    """Every broken promise found in the history and the final state."""
    found = check_log(state)
    found += check_operations(history, state)
    found += check_subscribers(history, state)
    return found


def check_log(state: State) -> list[str]:
    found: list[str] = []
    positions = [e["position"] for e in state.log]
    if positions != list(range(1, len(positions) + 1)):
        holes = sorted(set(range(1, max(positions, default=0) + 1)) - set(positions))
        found.append(f"log positions are not 1..n: holes {holes[:10]}")
    if state.head != len(state.log):
        found.append(f"head {state.head} but the log holds {len(state.log)} events")
    ids = Counter(e["id"] for e in state.log)
    doubled = [i for i, n in ids.items() if n > 1]
    if doubled:
        found.append(f"duplicate event ids in the log: {doubled[:10]}")
    projected: dict[str, list[Event]] = defaultdict(list)
    for e in state.log:
        projected[e["stream_id"]].append(e)
    for stream_id, events in projected.items():
        versions = [e["version"] for e in events]
        if versions != list(range(1, len(versions) + 1)):
            found.append(f"{stream_id}: versions {versions[:20]} are not 1..n")
        if state.streams.get(stream_id) != events:
            found.append(f"{stream_id}: GET /streams differs from the log projected onto it")
    for stream_id in state.streams.keys() - projected.keys():
        found.append(f"{stream_id}: a stream with no event in the log")
    return found


def check_operations(history: History, state: State) -> list[str]:
    found: list[str] = []
    by_id = {e["id"]: e for e in state.log}
    sent: set[str] = set()
    for op in history.operations:
        sent.update(op.ids)
        if len(set(op.ids)) != len(op.ids):  # an invalid request: must have failed
            if op.outcome == "ok" or any(i in by_id for i in op.ids):
                found.append(f"{op.stream_id}: invalid request {op.ids} was not refused")
            continue
        found += check_receipts(op)
        stored = [by_id.get(i) for i in op.ids]
        present = [e for e in stored if e is not None]
        outcome = op.outcome
        if outcome == "failed" and present:
            found.append(f"{op.stream_id}: failed request {op.ids} wrote {len(present)} events")
        if outcome == "unknown" and 0 < len(present) < len(op.ids):
            found.append(f"{op.stream_id}: unknown request {op.ids} half written")
        if outcome == "ok":
            receipt = next(a.receipt for a in op.attempts if a.receipt is not None)
            for (event_id, version, position), e in zip(receipt, stored, strict=True):
                if e is None:
                    found.append(f"acknowledged event {event_id} lost")
                elif (e["stream_id"], e["version"], e["position"]) != (
                    op.stream_id,
                    version,
                    position,
                ):
                    found.append(
                        f"acknowledged event {event_id} at {e['stream_id']} v{e['version']} "
                        f"p{e['position']}, receipt said {op.stream_id} v{version} p{position}"
                    )
        if len(present) == len(op.ids):
            found += check_stored(op, present)
    unexpected = [e["id"] for e in state.log if e["id"] not in sent]
    if unexpected:
        found.append(f"events in the log that no request sent: {unexpected[:10]}")
    return found


def check_receipts(op: Operation) -> list[str]:
    found: list[str] = []
    receipts = [a for a in op.attempts if a.receipt is not None]
    for a in receipts:
        assert a.receipt is not None
        if a.receipt != receipts[0].receipt:
            found.append(f"{op.stream_id}: receipts differ between attempts: {a.receipt}")
        if [r[0] for r in a.receipt] != op.ids:
            found.append(f"{op.stream_id}: receipt ids {a.receipt} are not the sent ids")
        first_version, first_position = a.receipt[0][1], a.receipt[0][2]
        if [(r[1], r[2]) for r in a.receipt] != [
            (first_version + i, first_position + i) for i in range(len(a.receipt))
        ]:
            found.append(f"{op.stream_id}: receipt not consecutive: {a.receipt}")
        if a.status == 201 and not precondition_holds(op.headers, first_version - 1):
            found.append(f"{op.stream_id}: 201 at v{first_version} despite {op.headers}")
    return found


def precondition_holds(headers: dict[str, str], current: int) -> bool:
    if headers.get("If-None-Match") == "*":
        return current == 0
    match = headers.get("If-Match")
    if match is None:
        return True
    if match == "*":
        return current > 0
    return int(match.strip('"')) == current


def check_stored(op: Operation, present: list[Event]) -> list[str]:
    found: list[str] = []
    first = present[0]
    expected = [
        (op.stream_id, first["version"] + i, first["position"] + i, sent["type"], sent["data"])
        for i, sent in enumerate(op.events)
    ]
    stored = [(e["stream_id"], e["version"], e["position"], e["type"], e["data"]) for e in present]
    if stored != expected:
        found.append(f"{op.stream_id}: request {op.ids} stored as {stored}, sent {expected}")
    return found


def check_subscribers(history: History, state: State) -> list[str]:
    found: list[str] = []
    ids = [e["id"] for e in state.log]
    for n, subscriber in enumerate(history.subscribers):
        resume = subscriber.connections[0].start if subscriber.connections else 0
        for c, connection in enumerate(subscriber.connections):
            where = f"subscriber {n} connection {c}"
            if connection.start != resume:
                found.append(f"{where}: started after {connection.start}, not {resume}")
            expected = list(range(connection.start + 1, connection.start + 1 + len(ids)))
            expected = expected[: len(connection.positions)]
            if connection.positions != expected:
                found.append(
                    f"{where}: delivered {connection.positions[:20]}, expected {expected[:20]}"
                )
            elif connection.ids != ids[connection.start : connection.start + len(expected)]:
                found.append(f"{where}: delivered ids differ from the log")
            if connection.positions:
                resume = connection.positions[-1]
    return found
