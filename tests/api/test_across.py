"""POST /events (contract section 11): atomic appends across streams, expectations per
stream, the DCB condition, receipts, idempotent retries, and what a group-commit batch
decides about its own requests."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx

from app.domain.errors import AppendConditionFailedError
from app.domain.types import (
    ANY_VERSION,
    Condition,
    Expectation,
    ExpectedKind,
    ExpectedVersion,
    LogFilter,
)
from app.settings import Settings
from app.store.bootstrap import open_store
from tests.api import append_ok, assert_problem, assert_validation, log_head, new_id
from tests.support.factories import event_body, new_event
from tests.support.seed import run_seed


def across(stream_id: str, type_: str = "Happened", *tags: str, **members: Any) -> dict[str, Any]:
    return {**event_body(type=type_, **members), "stream_id": stream_id, "tags": list(tags)}


async def post(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/events", json=body)


async def test_events_for_several_streams_are_appended_atomically(
    client: httpx.AsyncClient,
) -> None:
    await append_ok(client, "Account-a", event_body())
    body = {
        "events": [
            across("Account-a", "Debited"),
            across("Account-b", "Credited"),
            across("Account-a", "Noted"),
        ],
        "expect": [
            {"stream_id": "Account-a", "version": 1},
            {"stream_id": "Account-b", "version": 0},
            {"stream_id": "Audit-1", "version": 0},  # expected, not written
        ],
    }
    response = await post(client, body)
    assert response.status_code == 201, response.text
    assert response.headers["location"] == "/events/2"
    assert response.json() == {
        "head": 4,
        "events": [
            {"id": body["events"][0]["id"], "stream_id": "Account-a", "version": 2, "position": 2},
            {"id": body["events"][1]["id"], "stream_id": "Account-b", "version": 1, "position": 3},
            {"id": body["events"][2]["id"], "stream_id": "Account-a", "version": 3, "position": 4},
        ],
        "streams": [
            {"stream_id": "Account-a", "version": 3},
            {"stream_id": "Account-b", "version": 1},
        ],
    }
    again = await post(client, body)  # a retry: the original receipt, nothing written
    assert again.status_code == 200 and again.json() == response.json()
    assert await log_head(client) == 4
    stream = (await client.get("/streams/Account-a")).json()
    assert [e["type"] for e in stream["events"]] == ["Happened", "Debited", "Noted"]


async def test_unmet_expectations_are_409_naming_each_and_nothing_is_written(
    client: httpx.AsyncClient,
) -> None:
    await append_ok(client, "Account-a", event_body(), event_body())
    body = {
        "events": [across("Account-a"), across("Account-b")],
        "expect": [
            {"stream_id": "Account-a", "version": 1},
            {"stream_id": "Account-b", "version": "exists"},
            {"stream_id": "Account-c", "version": 0},  # holds
        ],
    }
    response = await post(client, body)
    assert_problem(
        response,
        409,
        "append-condition-failed",
        streams=[
            {"stream_id": "Account-a", "expected": 1, "current_version": 2},
            {"stream_id": "Account-b", "expected": "exists", "current_version": 0},
        ],
    )
    assert await log_head(client) == 2


async def test_the_condition_fails_on_a_match_after_after(client: httpx.AsyncClient) -> None:
    taken = {"items": [{"types": ["UserRegistered"], "tags": ["username:ada"]}]}
    first = {"events": [across("User-1", "UserRegistered", "username:ada")],
             "condition": {"fail_if_events_match": taken}}  # fmt: skip
    assert (await post(client, first)).status_code == 201
    second = {"events": [across("User-2", "UserRegistered", "username:ada")],
              "condition": {"fail_if_events_match": taken}}  # fmt: skip
    assert_problem(
        await post(client, second), 409, "append-condition-failed", streams=[], matched_position=1
    )
    # With `after` at or past the match, the same condition holds.
    later = {"events": [across("User-3", "UserRenamed", "username:ada")],
             "condition": {"fail_if_events_match": taken, "after": 1}}  # fmt: skip
    assert (await post(client, later)).status_code == 201
    bob = {"items": [{"tags": ["username:bob"]}]}
    other = {"events": [across("User-4", "UserRegistered", "username:bob")],
             "condition": {"fail_if_events_match": bob}}  # fmt: skip
    assert (await post(client, other)).status_code == 201
    assert await log_head(client) == 3


async def test_bad_bodies_are_422_with_pointers(client: httpx.AsyncClient) -> None:
    body = {
        "events": [
            {"type": "A", "data": 1},
            {**across("bad id"), "colour": 1},
        ],
        "expect": [
            {"stream_id": "S-1", "version": -1},
            {"stream_id": "S-1", "version": 1},
            {"version": 1},
        ],
        "condition": {"fail_if_events_match": {"items": [{"tags": [""]}]}, "after": "x"},
        "extra": 1,
    }
    assert_validation(
        await post(client, body),
        ("pointer", "/events/0/stream_id"),
        ("pointer", "/events/1/stream_id"),
        ("pointer", "/events/1/colour"),
        ("pointer", "/expect/0/version"),
        ("pointer", "/expect/1/stream_id"),
        ("pointer", "/expect/2/stream_id"),
        ("pointer", "/condition/fail_if_events_match/items/0/tags/0"),
        ("pointer", "/condition/after"),
        ("pointer", "/extra"),
    )
    assert_validation(await post(client, {"events": []}), ("pointer", "/events"))
    reused = new_id()
    twice = {"events": [across("S-1", id=reused), across("S-2", id=reused)]}
    assert_validation(await post(client, twice), ("pointer", "/events/1/id"))
    assert await log_head(client) == 0


async def test_partial_reuse_of_stored_ids_is_409(client: httpx.AsyncClient) -> None:
    stored = await append_ok(client, "S-1", event_body())
    used = stored["events"][0]["id"]
    body = {"events": [across("S-1", id=used), across("S-2")]}
    assert_problem(await post(client, body), 409, "duplicate-event-id", event_ids=[used])


async def test_a_condition_violated_by_an_earlier_request_of_the_same_batch_fails(
    settings: Settings,
) -> None:
    """Both requests are queued before the writer runs, so they are one batch: the
    second's condition must see the first's event although it is not committed."""
    query = LogFilter(types=("Registered",), tags=("username:ada",))
    async with open_store(settings) as store:
        await store.events.append("Warm-1", [new_event()], ANY_VERSION)
        batches: list[int] = []
        store.writer.on_batch = batches.append
        one = new_event(type="Registered")._replace(tags=("username:ada",))
        two = new_event(type="Registered")._replace(tags=("username:ada",))
        first = asyncio.ensure_future(
            store.events.append_across([("User-1", one)], (), Condition(query))
        )
        second = asyncio.ensure_future(
            store.events.append_across([("User-2", two)], (), Condition(query))
        )
        done = await asyncio.gather(first, second, return_exceptions=True)
        assert batches == [2], batches  # one batch of both
        assert done[0].events[0].position == 2  # type: ignore[union-attr]
        assert isinstance(done[1], AppendConditionFailedError), done[1]
        assert done[1].matched_position == 2
        exists = Expectation("User-1", ExpectedVersion(ExpectedKind.EXISTS), "exists")
        ok = await store.events.append_across([("User-9", new_event())], (exists,))
        assert ok.head == 3


async def test_a_tracker_makes_processing_a_message_twice_write_once(
    client: httpx.AsyncClient,
) -> None:
    """A projection writes its result and its upstream position in one request: the
    same message processed again (after a crash between processing and storing) is
    refused, whatever the events it would write."""

    def result(upstream: int) -> dict[str, Any]:
        return {
            "events": [across("Projection-1", "Counted", data={"upstream": upstream})],
            "track": {"name": "orders-projection", "position": upstream},
        }

    assert (await post(client, result(7))).status_code == 201
    again = await post(client, result(7))  # new event ids: not a retry, a second processing
    assert_problem(
        again, 409, "append-condition-failed", streams=[],
        tracker={"name": "orders-projection", "position": 7},
    )  # fmt: skip
    older = await post(client, result(3))
    assert older.status_code == 409 and older.json()["tracker"]["position"] == 7
    assert (await post(client, result(8))).status_code == 201
    only_moved = await post(client, {"events": [], "track": {"name": "idle", "position": 5}})
    assert only_moved.status_code == 201, only_moved.text
    assert only_moved.headers["location"] == "/trackers/idle"
    assert only_moved.json() == {"head": 2, "events": [], "streams": []}
    tracker = (await client.get("/trackers/orders-projection")).json()
    assert (tracker["name"], tracker["position"]) == ("orders-projection", 8)
    listed = (await client.get("/trackers?limit=1")).json()
    assert [t["name"] for t in listed["trackers"]] == ["idle"]
    assert listed["next"] == "/trackers?after=idle&limit=1"
    rest = (await client.get(listed["next"])).json()
    assert [t["name"] for t in rest["trackers"]] == ["orders-projection"]
    assert_problem(await client.get("/trackers/nobody"), 404, "tracker-not-found", name="nobody")
    events = (await client.get("/streams/Projection-1")).json()["events"]
    assert [e["data"]["upstream"] for e in events] == [7, 8]
    bad = {"events": [], "track": {"name": "", "position": -1}}
    assert_validation(
        await post(client, bad), ("pointer", "/track/name"), ("pointer", "/track/position")
    )


async def test_a_consumer_killed_at_random_points_writes_each_result_once(
    client: httpx.AsyncClient,
) -> None:
    """A consumer of an upstream log of 40 messages writes one result per message with
    `track`. It is killed at random points: before sending, after sending but before
    it learns the answer, after the answer; each time it restarts from where its own
    (lost) memory can say, which is behind what the store holds. Every message's
    result is stored exactly once."""
    rng = random.Random(run_seed())
    upstream = list(range(1, 41))
    known = 0  # what the consumer remembers having processed
    attempts = 0
    while known < len(upstream):
        attempts += 1
        assert attempts < 2000, "the consumer made no progress"
        message = upstream[known]
        body = {
            "events": [across("Results-1", "Processed", data={"message": message})],
            "track": {"name": "results", "position": message},
        }
        crash = rng.choice(["before", "unanswered", "after"] + ["none"] * 6)
        if crash == "before":
            known = max(0, known - rng.randint(0, 2))  # restarts further back
            continue
        response = await post(client, body)
        assert response.status_code in (201, 409), response.text
        if crash == "unanswered":
            known = max(0, known - rng.randint(0, 2))  # never saw the answer
            continue
        if response.status_code == 409:  # processed already: skip it
            assert response.json()["tracker"]["position"] >= message
        known += 1
        if crash == "after":
            known = max(0, known - rng.randint(1, 2))
    events = (await client.get("/streams/Results-1?limit=1000")).json()["events"]
    assert [e["data"]["message"] for e in events] == upstream, f"after {attempts} attempts"
    assert (await client.get("/trackers/results")).json()["position"] == 40
