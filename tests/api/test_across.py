"""POST /events (contract section 11): atomic appends across streams, expectations per
stream, the DCB condition, receipts, idempotent retries, and what a group-commit batch
decides about its own requests."""

from __future__ import annotations

import asyncio
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
