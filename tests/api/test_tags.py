"""Tags (contract sections 1, 4, 11): stored with events and returned in every read,
validated with pointers (nothing written on a 422), the `tag` filter of the log
(AND, with the other filters), and `POST /events/query` with its items (OR)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.api import append_ok, assert_validation, log_head
from tests.support.factories import event_body


def tagged(type_: str, *tags: str, **members: Any) -> dict[str, Any]:
    return {**event_body(type=type_, **members), "tags": list(tags)}


async def seed(client: httpx.AsyncClient) -> None:
    """1 c1/s1, 2 c1/s2, 3 c2/s1, 4 no tags, 5 c1/s1 of another type."""
    await append_ok(client, "Course-c1", tagged("Subscribed", "course:c1", "student:s1"))
    await append_ok(client, "Course-c1", tagged("Subscribed", "course:c1", "student:s2"))
    await append_ok(client, "Course-c2", tagged("Subscribed", "course:c2", "student:s1"))
    await append_ok(client, "Other-1", event_body(type="Subscribed"))
    await append_ok(client, "Course-c1", tagged("Left", "student:s1", "course:c1"))


def positions(page: dict[str, Any]) -> list[int]:
    return [e["position"] for e in page["events"]]


async def test_tags_are_returned_in_the_order_sent_in_every_read(
    client: httpx.AsyncClient,
) -> None:
    await seed(client)
    stream = (await client.get("/streams/Course-c1")).json()
    assert [e["tags"] for e in stream["events"]] == [
        ["course:c1", "student:s1"],
        ["course:c1", "student:s2"],
        ["student:s1", "course:c1"],
    ]
    log = (await client.get("/events")).json()
    assert log["events"][3]["tags"] == []
    assert (await client.get("/events/5")).json()["tags"] == ["student:s1", "course:c1"]
    assert (await client.get("/streams/Course-c2/1")).json()["tags"] == ["course:c2", "student:s1"]


async def test_bad_tags_are_422_with_pointers_and_nothing_is_written(
    client: httpx.AsyncClient,
) -> None:
    await append_ok(client, "T-1", event_body())
    body = {
        "events": [
            tagged("A", "ok", "ok"),
            tagged("A", "has space"),
            tagged("A", ""),
            tagged("A", "x" * 201),
            {**event_body(type="A"), "tags": "course:c1"},
            tagged("A", *(f"t{i}" for i in range(33))),
            {**event_body(type="A"), "tags": ["fine", 7]},
        ]
    }
    response = await client.post("/streams/T-1", json=body)
    assert_validation(
        response,
        ("pointer", "/events/0/tags/1"),
        ("pointer", "/events/1/tags/0"),
        ("pointer", "/events/2/tags/0"),
        ("pointer", "/events/3/tags/0"),
        ("pointer", "/events/4/tags"),
        ("pointer", "/events/5/tags"),
        ("pointer", "/events/6/tags/1"),
    )
    assert await log_head(client) == 1


async def test_the_tag_filter_is_and_and_combines_with_the_others(
    client: httpx.AsyncClient,
) -> None:
    await seed(client)

    async def read(query: str) -> dict[str, Any]:
        response = await client.get(f"/events?{query}")
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        return page

    assert positions(await read("tag=course:c1")) == [1, 2, 5]
    assert positions(await read("tag=course:c1&tag=student:s1")) == [1, 5]
    assert positions(await read("tag=student:s1&type=Subscribed")) == [1, 3]
    assert positions(await read("tag=student:s1&category=Course&stream=Course-c2")) == [3]
    assert positions(await read("tag=nobody")) == []
    page = await read("tag=course:c1&tag=student:s1&after=1&limit=1")
    assert positions(page) == [5] and page["next_after"] == 5
    assert page["next"] == "/events?after=5&limit=1&tag=course%3Ac1&tag=student%3As1"
    assert_validation(await client.get("/events?tag=a%20b"), ("parameter", "tag"))


async def query(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/events/query", json=body)


async def test_a_query_matches_any_of_its_items(client: httpx.AsyncClient) -> None:
    await seed(client)
    items = [
        {"types": ["Subscribed"], "tags": ["course:c1"]},
        {"tags": ["course:c2", "student:s1"]},
    ]
    response = await query(client, {"query": {"items": items}})
    assert response.status_code == 200, response.text
    page = response.json()
    assert positions(page) == [1, 2, 3]
    assert (page["head"], page["next_after"], page["next"]) == (5, 5, None)
    later = (await query(client, {"query": {"items": items}, "after": 2, "limit": 1})).json()
    assert positions(later) == [3] and later["next_after"] == 3
    everything = (await query(client, {"query": {"items": []}})).json()
    assert positions(everything) == [1, 2, 3, 4, 5]
    by_stream = {"items": [{"streams": ["Other-1"]}, {"types": ["Left"]}]}
    assert positions((await query(client, {"query": by_stream})).json()) == [4, 5]


async def test_a_query_long_polls_until_a_match(client: httpx.AsyncClient) -> None:
    await seed(client)
    body = {"query": {"items": [{"tags": ["course:c9"]}]}, "after": 5, "wait": 30}
    waiting = asyncio.create_task(query(client, body))
    await append_ok(client, "Course-c1", tagged("Subscribed", "course:c1"))  # no match
    await append_ok(client, "Course-c9", tagged("Subscribed", "course:c9", "student:s3"))
    response = await asyncio.wait_for(waiting, 30)
    assert positions(response.json()) == [7]


async def test_bad_queries_are_422_with_pointers(client: httpx.AsyncClient) -> None:
    bad = {
        "query": {"items": [{"types": ["1x"], "tags": ["a b"], "colour": []}, 7], "x": 1},
        "after": -1,
        "limit": 0,
        "wait": 61,
        "extra": True,
    }
    assert_validation(
        await query(client, bad),
        ("pointer", "/query/items/0/types/0"),
        ("pointer", "/query/items/0/tags/0"),
        ("pointer", "/query/items/0/colour"),
        ("pointer", "/query/items/1"),
        ("pointer", "/query/x"),
        ("pointer", "/after"),
        ("pointer", "/limit"),
        ("pointer", "/wait"),
        ("pointer", "/extra"),
    )
    assert_validation(await query(client, {}), ("pointer", "/query"))
    too_many: dict[str, Any] = {"query": {"items": [{}] * 17}}
    assert_validation(await query(client, too_many), ("pointer", "/query/items"))


async def test_subscriptions_filter_by_tags_or_by_a_query(client: httpx.AsyncClient) -> None:
    await seed(client)
    by_tag = {"tag": ["student:s1", "course:c1"]}
    created = await client.put("/subscriptions/s1-in-c1", json=by_tag)
    assert created.status_code == 201, created.text
    assert created.json()["filter"] == {
        "stream": [],
        "category": [],
        "type": [],
        "tag": ["course:c1", "student:s1"],
    }
    again = await client.put("/subscriptions/s1-in-c1", json={"tag": ["course:c1", "student:s1"]})
    assert again.status_code == 200  # the same filter, in another order
    page = (await client.get("/subscriptions/s1-in-c1/events")).json()
    assert positions(page) == [1, 5]

    items = [{"types": ["Left"]}, {"tags": ["course:c2"]}]
    made = await client.put("/subscriptions/either", json={"query": {"items": items}})
    assert made.status_code == 201, made.text
    shown = made.json()["filter"]["query"]["items"]
    assert sorted(i["types"] + i["tags"] for i in shown) == [["Left"], ["course:c2"]]
    assert positions((await client.get("/subscriptions/either/events")).json()) == [3, 5]
    swapped = await client.put("/subscriptions/either", json={"query": {"items": items[::-1]}})
    assert swapped.status_code == 200
    other = await client.put("/subscriptions/either", json={"tag": ["course:c2"]})
    assert other.status_code == 409

    both = {"type": ["Left"], "query": {"items": items}}
    assert_validation(await client.put("/subscriptions/bad", json=both), ("pointer", "/type"))
    bad_tag = {"tag": ["a b"]}
    assert_validation(await client.put("/subscriptions/bad", json=bad_tag), ("pointer", "/tag/0"))


async def test_backward_log_reads_give_the_newest_first(client: httpx.AsyncClient) -> None:
    await seed(client)

    async def read(query: str) -> dict[str, Any]:
        response = await client.get(f"/events?direction=backward&{query}")
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        return page

    newest = await read("limit=1&category=Course")
    assert positions(newest) == [5] and newest["next_before"] == 5
    assert newest["next"] == "/events?direction=backward&before=5&limit=1&category=Course"
    everything = await read("limit=2")
    assert positions(everything) == [5, 4] and everything["head"] == 5
    older = (await client.get(everything["next"])).json()
    assert positions(older) == [3, 2] and older["next_before"] == 2
    last = (await client.get(older["next"])).json()
    assert positions(last) == [1] and last["next_before"] == 1
    assert positions((await client.get(last["next"])).json()) == []
    assert positions(await read("before=5&tag=student:s1")) == [3, 1]
    assert positions(await read("before=99&type=Left")) == [5]
    assert_validation(await client.get("/events?before=3"), ("parameter", "before"))
    assert_validation(
        await client.get("/events?direction=backward&after=2&wait=1"),
        ("parameter", "after"),
        ("parameter", "wait"),
    )
