"""The HTTP API against an in-memory model of the contract, on SQLite and PostgreSQL.

A hypothesis state machine appends (with and without If-Match / If-None-Match, with
fresh, reused and server-assigned event ids, retries of earlier appends), reads streams
forward and backward, reads the log and single events, and compares every response
(status, body, ETag, Location, next links, problem members) with what the model says
the contract requires. At the end of each example the whole log and every stream are
compared too.

Each example starts on an empty database (the tables are emptied through a direct
connection) and a new app, so no cache of the previous example survives. The app runs
in the TestClient's event loop thread, which drives its lifespan.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import anyio.from_thread
import httpx
import hypothesis
import psycopg
import pytest
from hypothesis import HealthCheck
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from app.main import create_app
from app.settings import Settings

STREAMS = ["Order-1", "Order-2", "Cart-1", "solo"]
TYPES = ["Placed", "Paid", "a.b:c-d_e"]
TAGS = ["course:c1", "student:s9", "é:ü", 'a"b\\\\c', "x" * 200]
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
RESET = [
    "DELETE FROM events",
    "DELETE FROM event_tags",
    "DELETE FROM streams",
    "DELETE FROM snapshots",
    "DELETE FROM subscriptions",
    "UPDATE log_head SET position = 0",
]

text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=8)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)
# (header, value) of an append; "{v}" is replaced by a version near the stream's own.
PRECONDITIONS = st.sampled_from(
    [
        None,
        ("If-None-Match", "*"),
        ("If-Match", '"0"'),
        ("If-Match", '"{v}"'),
        ("If-Match", "*"),
        ("If-Match", '"{v}", "{w}"'),
        ("If-Match", 'W/"{v}"'),
        ("If-Match", '"-1"'),
    ]
)


@dataclass
class Event:
    id: str
    stream_id: str
    type: str
    version: int
    position: int
    data: Any
    metadata: dict[str, Any]
    tags: list[str] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stream_id": self.stream_id,
            "type": self.type,
            "version": self.version,
            "position": self.position,
            "data": self.data,
            "metadata": self.metadata,
            "tags": self.tags,
        }


@dataclass
class Sent:
    """One event of an append request; `id` None lets the server assign one."""

    id: str | None
    type: str
    data: Any
    metadata: dict[str, Any] | None
    tags: list[str] | None = None

    def body(self) -> dict[str, Any]:
        member: dict[str, Any] = {"type": self.type, "data": self.data}
        if self.id is not None:
            member["id"] = self.id
        if self.metadata is not None:
            member["metadata"] = self.metadata
        if self.tags is not None:
            member["tags"] = self.tags
        return member


@dataclass
class Model:
    log: list[Event] = field(default_factory=list)
    streams: dict[str, list[Event]] = field(default_factory=dict)
    by_id: dict[str, Event] = field(default_factory=dict)

    def version(self, stream_id: str) -> int:
        return len(self.streams.get(stream_id, []))


def expected_matches(header: tuple[str, str] | None, current: int) -> bool:
    """Section 2 of the contract, for the headers this machine sends."""
    if header is None:
        return True
    name, value = header
    if name == "If-None-Match" or value == "*":
        return current == 0 if name == "If-None-Match" else current > 0
    versions = {
        int(tag.strip().strip('"'))
        for tag in value.split(",")
        if not tag.strip().startswith("W/") and tag.strip().strip('"').isdigit()
    }
    return current == 0 if versions == {0} else current in versions


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values. PostgreSQL's jsonb keeps the value of a number, not its
    text: the double 7.205759403792607e16 comes back written out in full
    (72057594037926070), which a JSON reader turns into the same double (README, JSON)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and float(a) == float(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == f"/problems/{slug}", body
    assert body["status"] == status
    return body


def reset(database_url: str) -> None:
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            for statement in RESET:
                conn.execute(statement)
        return
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in RESET:
            conn.execute(statement)  # type: ignore[arg-type,unused-ignore]


@asynccontextmanager
async def serving(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A new app with its lifespan running, and a client for it."""
    app = create_app(Settings(database_url=database_url, migrate_on_start=False))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://evstore") as c:
            yield c


class SyncClient:
    """The async client driven from the state machine's thread through a portal: the
    app's loop (its writer, notifier and pool) lives in the portal's thread."""

    def __init__(self, portal: anyio.from_thread.BlockingPortal, database_url: str) -> None:
        self.portal = portal
        self.context: AbstractContextManager[httpx.AsyncClient] = portal.wrap_async_context_manager(
            serving(database_url)
        )
        self.client = self.context.__enter__()

    def close(self) -> None:
        self.context.__exit__(None, None, None)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.portal.call(lambda: self.client.get(url, **kwargs))

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.portal.call(lambda: self.client.post(url, **kwargs))


class ContractMachine(RuleBasedStateMachine):
    database_url = ""
    portal: anyio.from_thread.BlockingPortal

    receipts = Bundle("receipts")

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.ids = 0
        self.repeated_sent = False
        reset(self.database_url)
        self.client = SyncClient(self.portal, self.database_url)

    def fresh_id(self) -> str:
        """A new event id; deterministic, so that examples replay exactly."""
        self.ids += 1
        return f"00000000-0000-4000-8000-{self.ids:012x}"

    def teardown(self) -> None:
        try:
            self.check_everything()
        finally:
            self.client.close()

    # --- appends -------------------------------------------------------------------

    def append(
        self, stream_id: str, sent: list[Sent], header: tuple[str, str] | None
    ) -> dict[str, Any] | None:
        """Send an append, check the response against the model, update the model;
        the receipt when the append wrote or replayed events."""
        headers = {"Content-Type": "application/json"}
        if header is not None:
            headers[header[0]] = header[1]
        body = {"events": [s.body() for s in sent]}
        response = self.client.post(f"/streams/{stream_id}", json=body, headers=headers)
        current = self.model.version(stream_id)
        ids = [s.id for s in sent]
        found = [i for i in ids if i is not None and i in self.model.by_id]
        if found:
            stored = [self.model.by_id.get(i) if i else None for i in ids]
            versions = [e.version for e in stored if e is not None and e.stream_id == stream_id]
            first = versions[0] if versions else 0
            if len(versions) == len(sent) and versions == list(range(first, first + len(sent))):
                receipt = {
                    "stream_id": stream_id,
                    "version": versions[-1],
                    "events": [
                        {"id": e.id, "version": e.version, "position": e.position}
                        for e in stored
                        if e is not None
                    ],
                }
                self.check_receipt(response, 200, receipt)
                return receipt
            assert problem(response, 409, "duplicate-event-id")["event_ids"] == found
            return None
        if not expected_matches(header, current):
            body = problem(response, 412, "wrong-expected-version")
            assert header is not None
            assert (body["stream_id"], body["expected"]) == (stream_id, header[1])
            assert body["current_version"] == current
            assert response.headers.get("etag") == (f'"{current}"' if current else None)
            return None
        assert response.status_code == 201, (response.status_code, response.text)
        created = response.json()["events"]
        new: list[Event] = []
        for i, (s, out) in enumerate(zip(sent, created, strict=True)):
            event_id = s.id if s.id is not None else out["id"]
            assert UUID_RE.fullmatch(event_id), event_id
            event = Event(
                event_id,
                stream_id,
                s.type,
                current + i + 1,
                len(self.model.log) + i + 1,
                s.data,
                s.metadata if s.metadata is not None else {},
                list(s.tags or ()),
            )
            new.append(event)
        receipt = {
            "stream_id": stream_id,
            "version": current + len(sent),
            "events": [{"id": e.id, "version": e.version, "position": e.position} for e in new],
        }
        self.check_receipt(response, 201, receipt)
        self.model.log += new
        self.model.streams.setdefault(stream_id, []).extend(new)
        self.model.by_id.update((e.id, e) for e in new)
        return receipt

    def check_receipt(self, response: Any, status: int, receipt: dict[str, Any]) -> None:
        assert response.status_code == status, (response.status_code, response.text)
        assert response.json() == receipt
        assert response.headers["etag"] == f'"{receipt["version"]}"'
        first = receipt["events"][0]["version"]
        assert response.headers["location"] == f"/streams/{receipt['stream_id']}/{first}"

    @staticmethod
    def header(choice: tuple[str, str] | None, current: int, delta: int) -> tuple[str, str] | None:
        if choice is None:
            return None
        v = max(0, current + delta)
        return choice[0], choice[1].replace("{v}", str(v)).replace("{w}", str(v + 2))

    @rule(
        target=receipts,
        stream_id=st.sampled_from(STREAMS),
        events=st.lists(
            st.tuples(
                st.booleans(),
                st.sampled_from(TYPES),
                json_values,
                st.none() | st.dictionaries(text, json_values, max_size=2),
                st.none() | st.lists(st.sampled_from(TAGS), max_size=3, unique=True),
            ),
            min_size=1,
            max_size=3,
        ),
        choice=PRECONDITIONS,
        delta=st.integers(-1, 1),
    )
    def append_new(
        self,
        stream_id: str,
        events: list[tuple[bool, str, Any, dict[str, Any] | None, list[str] | None]],
        choice: tuple[str, str] | None,
        delta: int,
    ) -> tuple[str, list[Sent]] | None:
        sent = [
            Sent(self.fresh_id() if with_id else None, t, d, m, g) for with_id, t, d, m, g in events
        ]
        header = self.header(choice, self.model.version(stream_id), delta)
        receipt = self.append(stream_id, sent, header)
        if receipt is None or any(s.id is None for s in sent):
            return None  # only appends with every id can be retried
        return stream_id, sent

    @rule(
        target=receipts,
        stream_id=st.sampled_from(STREAMS),
        events=st.lists(st.tuples(st.sampled_from(TYPES), json_values), min_size=1, max_size=2),
    )
    def append_expecting_the_version(
        self, stream_id: str, events: list[tuple[str, Any]]
    ) -> tuple[str, list[Sent]] | None:
        """The usual optimistic write: If-Match with the version last read, or
        If-None-Match: * for a new stream."""
        current = self.model.version(stream_id)
        header = ("If-Match", f'"{current}"') if current else ("If-None-Match", "*")
        sent = [Sent(self.fresh_id(), t, d, None) for t, d in events]
        receipt = self.append(stream_id, sent, header)
        return None if receipt is None else (stream_id, sent)

    @rule(earlier=receipts, choice=PRECONDITIONS, delta=st.integers(-1, 1))
    def retry(
        self, earlier: tuple[str, list[Sent]] | None, choice: tuple[str, str] | None, delta: int
    ) -> None:
        """A retry is answered 200 with the original receipt, whatever its precondition."""
        if earlier is None:
            return
        stream_id, sent = earlier
        header = self.header(choice, self.model.version(stream_id), delta)
        self.append(stream_id, sent, header)

    @precondition(lambda self: bool(self.model.by_id))
    @rule(
        data=st.data(),
        stream_id=st.sampled_from(STREAMS),
        fresh_first=st.booleans(),
        choice=PRECONDITIONS,
    )
    def reuse_id(
        self,
        data: st.DataObject,
        stream_id: str,
        fresh_first: bool,
        choice: tuple[str, str] | None,
    ) -> None:
        """An id already used, alone or next to a fresh one, in any stream: 409, or a
        replay when it is exactly a stored run of this stream."""
        used = data.draw(st.sampled_from([e.id for e in self.model.log]))
        sent = [Sent(used, "Placed", 1, None)]
        if fresh_first:
            sent.insert(0, Sent(self.fresh_id(), "Placed", 2, None))
        self.append(stream_id, sent, self.header(choice, self.model.version(stream_id), 0))

    @precondition(lambda self: not self.repeated_sent)
    @rule(stream_id=st.sampled_from(STREAMS))
    def repeated_id_in_one_request(self, stream_id: str) -> None:
        """Once per example (it changes nothing): two events with one id are a 422."""
        self.repeated_sent = True
        same = self.fresh_id()
        body = {
            "events": [{"id": same, "type": "A", "data": 1}, {"id": same, "type": "A", "data": 2}]
        }
        response = self.client.post(f"/streams/{stream_id}", json=body)
        errors = problem(response, 422, "validation-error")["errors"]
        assert [e["pointer"] for e in errors] == ["/events/1/id"]

    # --- reads ---------------------------------------------------------------------

    @rule(
        stream_id=st.sampled_from(STREAMS),
        backward=st.booleans(),
        start=st.none() | st.integers(1, 8),
        limit=st.integers(1, 4),
    )
    def read_stream(self, stream_id: str, backward: bool, start: int | None, limit: int) -> None:
        query: dict[str, Any] = {"limit": limit}
        if start is not None:
            query["from"] = start
        if backward:
            query["direction"] = "backward"
        response = self.client.get(f"/streams/{stream_id}", params=query)
        stored = self.model.streams.get(stream_id, [])
        version = len(stored)
        if not version:
            assert problem(response, 404, "stream-not-found")["stream_id"] == stream_id
            return
        if backward:
            top = version if start is None else start
            page = [e for e in reversed(stored) if e.version <= top][:limit]
        else:
            page = [e for e in stored if e.version >= (start or 1)][:limit]
        next_url = None
        if len(page) == limit:
            following = page[-1].version + (-1 if backward else 1)
            if 1 <= following <= version:
                next_query: dict[str, Any] = {"from": following, "limit": limit}
                if backward:
                    next_query["direction"] = "backward"
                next_url = f"/streams/{stream_id}?{urlencode(next_query)}"
        assert response.status_code == 200, response.text
        assert response.headers["etag"] == f'"{version}"'
        body = response.json()
        assert (body["stream_id"], body["version"], body["next"]) == (stream_id, version, next_url)
        self.check_events(body["events"], page)

    @rule(stream_id=st.sampled_from(STREAMS), delta=st.integers(-1, 0))
    def read_stream_if_none_match(self, stream_id: str, delta: int) -> None:
        version = self.model.version(stream_id)
        tag = f'"{max(0, version + delta)}"'
        response = self.client.get(f"/streams/{stream_id}", headers={"If-None-Match": tag})
        if not version:
            problem(response, 404, "stream-not-found")
        elif delta == 0:
            assert response.status_code == 304, response.text
            assert response.headers["etag"] == tag
        else:
            assert response.status_code == 200
            assert response.json()["version"] == version

    @rule(data=st.data(), limit=st.integers(1, 5))
    def read_log(self, data: st.DataObject, limit: int) -> None:
        head = len(self.model.log)
        after = data.draw(st.integers(0, head + 1), label="after")
        response = self.client.get("/events", params={"after": after, "limit": limit})
        assert response.status_code == 200, response.text
        body = response.json()
        page = self.model.log[after : after + limit]
        next_after = page[-1].position if len(page) == limit else max(after, head)
        assert (body["head"], body["next_after"]) == (head, next_after)
        assert body["next"] == f"/events?after={next_after}&limit={limit}"
        self.check_events(body["events"], page)

    @rule(data=st.data())
    def read_one_event(self, data: st.DataObject) -> None:
        position = data.draw(st.integers(1, len(self.model.log) + 1), label="position")
        response = self.client.get(f"/events/{position}")
        if position > len(self.model.log):
            problem(response, 404, "event-not-found")
            return
        event = self.model.log[position - 1]
        assert response.status_code == 200, response.text
        self.check_events([response.json()], [event])
        by_version = self.client.get(f"/streams/{event.stream_id}/{event.version}")
        assert by_version.status_code == 200
        assert by_version.json() == response.json()

    @invariant()
    def head_is_the_log_length(self) -> None:
        response = self.client.get("/events", params={"after": len(self.model.log)})
        assert response.json()["head"] == len(self.model.log)

    # --- comparisons ---------------------------------------------------------------

    @staticmethod
    def check_events(got: list[dict[str, Any]], want: list[Event]) -> None:
        for item in got:
            stamp = item.pop("recorded_at")
            assert isinstance(stamp, str) and stamp.endswith("Z"), stamp
        expected = [e.json() for e in want]
        assert same_json(got, expected), (got, expected)

    def check_everything(self) -> None:
        response = self.client.get("/events", params={"limit": 1000})
        self.check_events(response.json()["events"], self.model.log)
        for stream_id in STREAMS:
            response = self.client.get(f"/streams/{stream_id}", params={"limit": 1000})
            stored = self.model.streams.get(stream_id, [])
            if not stored:
                assert response.status_code == 404
                continue
            self.check_events(response.json()["events"], stored)
        listed = self.client.get("/streams").json()["streams"]
        versions = {s["stream_id"]: s["version"] for s in listed}
        assert versions == {s: len(e) for s, e in self.model.streams.items()}


@pytest.fixture
def machine(database_url: str) -> Iterator[type[ContractMachine]]:
    class OnThisDatabase(ContractMachine):
        pass

    with anyio.from_thread.start_blocking_portal() as portal:
        OnThisDatabase.database_url = database_url
        OnThisDatabase.portal = portal
        yield OnThisDatabase


def test_http_api_follows_the_model(machine: type[ContractMachine]) -> None:
    run_state_machine_as_test(
        machine,
        settings=hypothesis.settings(
            max_examples=15,
            stateful_step_count=25,
            derandomize=True,
            database=None,
            deadline=None,
            print_blob=False,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )
