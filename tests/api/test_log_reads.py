"""GET /events and GET /events/{position}: paging, filters, next_after, caching and
long polling (contract section 4)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from app.settings import Settings
from tests.api import TIMESTAMP, append_ok, assert_problem, client_of, fill, log_head
from tests.support.factories import event_body

IMMUTABLE = "public, max-age=31536000, immutable"

# position: (stream_id, type)
LOG = [
    ("A-1", "X"),
    ("B-1", "Z"),
    ("A-2", "X"),
    ("A-1", "Y"),
    ("B-1", "X"),
    ("C-1", "Y"),
]


async def write_log(client: httpx.AsyncClient) -> None:
    for stream_id, type in LOG:
        await append_ok(client, stream_id, event_body(type=type))


def positions(response: httpx.Response) -> list[int]:
    return [e["position"] for e in response.json()["events"]]


def assert_log_page(
    response: httpx.Response,
    expected_positions: list[int],
    head: int,
    next_after: int,
    next_url: str,
    cache_control: str = "no-cache",
) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"events", "head", "next_after", "next"}
    assert positions(response) == expected_positions
    assert (body["head"], body["next_after"], body["next"]) == (head, next_after, next_url)
    assert response.headers["link"] == f'<{next_url}>; rel="next"'
    assert response.headers["cache-control"] == cache_control


async def test_an_empty_log(client: httpx.AsyncClient) -> None:
    response = await client.get("/events")
    assert_log_page(response, [], 0, 0, "/events?after=0&limit=100")
    filtered = await client.get("/events", params={"type": "X", "after": 0, "limit": 5})
    assert_log_page(filtered, [], 0, 0, "/events?after=0&limit=5&type=X")


async def test_paging_with_after_and_limit(client: httpx.AsyncClient) -> None:
    await write_log(client)
    everything = await client.get("/events")
    assert_log_page(everything, [1, 2, 3, 4, 5, 6], 6, 6, "/events?after=6&limit=100")
    assert [(e["stream_id"], e["type"]) for e in everything.json()["events"]] == LOG

    first = await client.get("/events", params={"limit": 2})
    assert_log_page(first, [1, 2], 6, 2, "/events?after=2&limit=2", IMMUTABLE)
    second = await client.get(first.json()["next"])
    assert_log_page(second, [3, 4], 6, 4, "/events?after=4&limit=2", IMMUTABLE)
    third = await client.get(second.json()["next"])
    # full, but it ends at the head: a later read of the same URL is the same, yet
    # the body's head is not, so it is not cached for ever
    assert_log_page(third, [5, 6], 6, 6, "/events?after=6&limit=2")
    at_head = await client.get(third.json()["next"])
    assert_log_page(at_head, [], 6, 6, "/events?after=6&limit=2")
    short = await client.get("/events", params={"after": 3, "limit": 5})
    assert_log_page(short, [4, 5, 6], 6, 6, "/events?after=6&limit=5")

    await append_ok(client, "D-1", event_body())
    grown = await client.get("/events", params={"after": 4, "limit": 2})
    assert_log_page(grown, [5, 6], 7, 6, "/events?after=6&limit=2", IMMUTABLE)


FILTERS: list[tuple[dict[str, Any], list[int], str]] = [
    ({"stream": "A-1"}, [1, 4], "stream=A-1"),
    ({"stream": ["A-1", "B-1"]}, [1, 2, 4, 5], "stream=A-1&stream=B-1"),
    ({"stream": ["B-1", "B-1"]}, [2, 5], "stream=B-1&stream=B-1"),
    ({"stream": "A"}, [], "stream=A"),
    ({"category": "A"}, [1, 3, 4], "category=A"),
    ({"category": ["A", "C"]}, [1, 3, 4, 6], "category=A&category=C"),
    ({"type": "X"}, [1, 3, 5], "type=X"),
    ({"type": ["X", "Y"]}, [1, 3, 4, 5, 6], "type=X&type=Y"),
    ({"category": "A", "type": "X"}, [1, 3], "category=A&type=X"),
    ({"category": "B", "type": ["X", "Z"]}, [2, 5], "category=B&type=X&type=Z"),
    ({"stream": ["A-1", "C-1"], "type": "Y"}, [4, 6], "stream=A-1&stream=C-1&type=Y"),
    ({"stream": "A-1", "category": "B"}, [], "stream=A-1&category=B"),
    (
        {"stream": ["A-1", "B-1"], "category": ["A", "C"], "type": ["X", "Y"]},
        [1, 4],
        "stream=A-1&stream=B-1&category=A&category=C&type=X&type=Y",
    ),
]


async def test_filters_or_within_and_across(client: httpx.AsyncClient) -> None:
    await write_log(client)
    for params, expected, query in FILTERS:
        response = await client.get("/events", params=params)
        assert positions(response) == expected, params
        assert_log_page(response, expected, 6, 6, f"/events?after=6&limit=100&{query}")


async def test_filtered_paging_never_rescans(client: httpx.AsyncClient) -> None:
    await write_log(client)
    first = await client.get("/events", params={"type": "X", "limit": 2})
    assert_log_page(first, [1, 3], 6, 3, "/events?after=3&limit=2&type=X", IMMUTABLE)
    second = await client.get(first.json()["next"])
    # a short page scanned up to the head: the next read starts there, past 6
    assert_log_page(second, [5], 6, 6, "/events?after=6&limit=2&type=X")
    nothing = await client.get("/events", params={"type": "Nope"})
    assert_log_page(nothing, [], 6, 6, "/events?after=6&limit=100&type=Nope")

    for _ in range(3):
        await append_ok(client, "B-1", event_body(type="Y"))
    skipped = await client.get(second.json()["next"])
    assert_log_page(skipped, [], 9, 9, "/events?after=9&limit=2&type=X")
    await append_ok(client, "B-1", event_body(type="X"))
    found = await client.get(skipped.json()["next"])
    assert_log_page(found, [10], 10, 10, "/events?after=10&limit=2&type=X")


async def test_one_event_by_position(client: httpx.AsyncClient) -> None:
    await write_log(client)
    sent = event_body(type="OrderPlaced", data={"total": 42}, metadata={"correlation_id": "c"})
    sent["tags"] = ["region:eu", "customer:c-7"]  # returned in the order sent
    await append_ok(client, "Order-42", event_body(), sent)
    response = await client.get("/events/8")
    assert response.status_code == 200
    assert response.headers["cache-control"] == IMMUTABLE
    event = response.json()
    assert TIMESTAMP.fullmatch(event.pop("recorded_at"))
    assert event == {
        "id": sent["id"],
        "stream_id": "Order-42",
        "type": "OrderPlaced",
        "version": 2,
        "position": 8,
        "data": {"total": 42},
        "metadata": {"correlation_id": "c"},
        "tags": ["region:eu", "customer:c-7"],
    }
    first = (await client.get("/events/1")).json()
    assert (first["stream_id"], first["tags"]) == ("A-1", [])
    page = (await client.get("/events?after=7&limit=1")).json()
    assert page["events"][0]["tags"] == ["region:eu", "customer:c-7"]
    for position in (9, 10_000, 2**63 - 1):
        assert_problem(await client.get(f"/events/{position}"), 404, "event-not-found")


async def test_wait_returns_an_event_appended_during_the_wait(
    client: httpx.AsyncClient,
) -> None:
    await fill(client, "A-1", 1)
    reader = asyncio.create_task(client.get("/events", params={"after": 1, "wait": 20}))
    receipt = await append_ok(client, "B-1", event_body(type="Late"))
    response = await reader
    assert_log_page(response, [2], 2, 2, "/events?after=2&limit=100")
    assert response.json()["events"][0]["id"] == receipt["events"][0]["id"]


async def test_a_filtered_wait_skips_events_that_do_not_match(
    client: httpx.AsyncClient,
) -> None:
    await fill(client, "A-1", 1)
    reader = asyncio.create_task(
        client.get("/events", params={"after": 1, "wait": 20, "type": "Wanted"})
    )
    await append_ok(client, "B-1", event_body(type="Unwanted"))
    await append_ok(client, "B-1", event_body(type="Unwanted"), event_body(type="Wanted"))
    response = await reader
    assert_log_page(response, [4], 4, 4, "/events?after=4&limit=100&type=Wanted")


async def test_wait_answers_at_once_when_events_match(client: httpx.AsyncClient) -> None:
    await write_log(client)
    response = await client.get("/events", params={"after": 2, "wait": 30, "category": "A"})
    assert_log_page(response, [3, 4], 6, 6, "/events?after=6&limit=100&category=A")


async def test_wait_returns_empty_when_nothing_arrives(client: httpx.AsyncClient) -> None:
    await fill(client, "A-1", 2)
    idle = await client.get("/events", params={"after": 2, "wait": 0.3})
    assert_log_page(idle, [], 2, 2, "/events?after=2&limit=100")
    filtered = await client.get("/events", params={"wait": 0.3, "type": "Nope"})
    assert_log_page(filtered, [], 2, 2, "/events?after=2&limit=100&type=Nope")


async def test_max_page_size_setting_caps_pages(settings: Settings) -> None:
    small = settings.model_copy(update={"max_page_size": 2})
    async with client_of(small) as client:
        body = {"events": [{"type": "T", "data": i} for i in range(5)]}
        assert (await client.post("/streams/Cap-1", json=body)).status_code == 201
        page = (await client.get("/events")).json()
        stream = (await client.get("/streams/Cap-1", params={"limit": 500})).json()
    assert [e["position"] for e in page["events"]] == [1, 2]
    assert page["next"] == "/events?after=2&limit=2"
    assert [e["version"] for e in stream["events"]] == [1, 2]


async def walk(client: httpx.AsyncClient, url: str) -> list[list[int]]:
    """Follow `next` from `url` until a page is empty (or has no next); the positions
    of each page."""
    pages: list[list[int]] = []
    while url:
        response = await client.get(url)
        assert response.status_code == 200, response.text
        body = response.json()
        if not body["events"]:
            break
        pages.append([e["position"] for e in body["events"]])
        url = body["next"]
    return pages


async def test_pages_are_bounded_in_bytes(settings: Settings) -> None:
    """A page ends early when the next event would pass max_page_bytes (an event
    bigger than the budget comes alone), and paging on sees every event once."""
    small = settings.model_copy(update={"max_page_bytes": 1024})
    pad = "x" * 400  # each event's data and metadata: 411 characters
    async with client_of(small) as client:
        for i in range(7):
            await append_ok(client, "Big-1", event_body(data={"p": pad}))
            await append_ok(client, "Small-1", event_body(data=i))
        await append_ok(client, "Big-1", event_body(data={"p": "y" * 3000}))
        await append_ok(client, "Big-1", event_body(data={"p": pad}))
        head = await log_head(client)
        whole = await walk(client, "/events?limit=100")
        filtered = await walk(client, "/events?limit=100&stream=Big-1")
        forward = await walk(client, "/streams/Big-1?limit=100")
        backward = await walk(client, "/streams/Big-1?limit=100&direction=backward")
        single = (await client.get("/streams/Big-1", params={"from": 8, "limit": 100})).json()
    big = [p for page in filtered for p in page]
    assert [p for page in whole for p in page] == list(range(1, head + 1))
    assert big == [1, 3, 5, 7, 9, 11, 13, 15, 16]
    assert [p for page in forward for p in page] == big
    assert [p for page in backward for p in page] == big[::-1]
    # 411 + 3 + 411 + 3 characters; a fifth event would pass 1024
    assert whole == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14], [15], [16]]
    for pages in (filtered, forward, backward):
        assert max(map(len, pages)) <= 2, pages  # 3 events of 411 pass 1024
        assert [15] in pages, pages  # the 3 KB event, alone
    assert len(forward) == 6 and len(filtered) == 6  # 2+2+2+1 (cut), 1 (big), 1
    assert [e["version"] for e in single["events"]] == [8]
    assert single["next"] == "/streams/Big-1?from=9&limit=100"
