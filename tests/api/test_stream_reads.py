"""GET and HEAD /streams/{stream_id}, GET /streams/{stream_id}/{version} and GET /streams
(contract sections 3 and 9)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api import TIMESTAMP, append_ok, assert_problem, fill
from tests.support.factories import event_body

IMMUTABLE = "public, max-age=31536000, immutable"


def versions(response: httpx.Response) -> list[int]:
    return [e["version"] for e in response.json()["events"]]


def assert_page(
    response: httpx.Response,
    expected_versions: list[int],
    next_url: str | None,
    cache_control: str,
    version: int = 5,
) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"stream_id", "version", "events", "next"}
    assert body["version"] == version
    assert versions(response) == expected_versions
    assert body["next"] == next_url
    assert response.headers["etag"] == f'"{version}"'
    assert response.headers["cache-control"] == cache_control
    if next_url is None:
        assert "link" not in response.headers
    else:
        assert response.headers["link"] == f'<{next_url}>; rel="next"'


async def test_forward_paging_follows_next(client: httpx.AsyncClient) -> None:
    await fill(client, "Order-1", 5)
    await fill(client, "Order-2", 2)
    first = await client.get("/streams/Order-1", params={"limit": 2})
    assert_page(first, [1, 2], "/streams/Order-1?from=3&limit=2", IMMUTABLE)
    second = await client.get(first.json()["next"])
    assert_page(second, [3, 4], "/streams/Order-1?from=5&limit=2", IMMUTABLE)
    last = await client.get(second.json()["next"])
    assert_page(last, [5], None, "no-cache")
    assert [e["data"] for e in last.json()["events"]] == [{"i": 5}]


async def test_backward_paging_follows_next(client: httpx.AsyncClient) -> None:
    await fill(client, "Order-1", 5)
    first = await client.get("/streams/Order-1", params={"limit": 2, "direction": "backward"})
    # a page holding the newest event is never immutable
    assert_page(first, [5, 4], "/streams/Order-1?from=3&limit=2&direction=backward", "no-cache")
    second = await client.get(first.json()["next"])
    assert_page(second, [3, 2], "/streams/Order-1?from=1&limit=2&direction=backward", IMMUTABLE)
    last = await client.get(second.json()["next"])
    assert_page(last, [1], None, "no-cache")


async def test_default_from_and_limit(client: httpx.AsyncClient) -> None:
    await fill(client, "Order-1", 5)
    forward = await client.get("/streams/Order-1")
    assert_page(forward, [1, 2, 3, 4, 5], None, "no-cache")
    backward = await client.get("/streams/Order-1", params={"direction": "backward"})
    assert_page(backward, [5, 4, 3, 2, 1], None, "no-cache")
    explicit = await client.get("/streams/Order-1", params={"direction": "forward", "from": 3})
    assert_page(explicit, [3, 4, 5], None, "no-cache")
    back_from = await client.get("/streams/Order-1", params={"direction": "backward", "from": 2})
    assert_page(back_from, [2, 1], None, "no-cache")

    await fill(client, "Long-1", 150)
    default_limit = await client.get("/streams/Long-1")
    assert_page(
        default_limit, list(range(1, 101)), "/streams/Long-1?from=101&limit=100", IMMUTABLE, 150
    )


async def test_a_full_page_at_the_head_is_not_immutable(client: httpx.AsyncClient) -> None:
    await fill(client, "Order-1", 4)
    whole = await client.get("/streams/Order-1", params={"limit": 4})
    assert_page(whole, [1, 2, 3, 4], None, "no-cache", version=4)
    tail = await client.get("/streams/Order-1", params={"limit": 2, "from": 3})
    assert_page(tail, [3, 4], None, "no-cache", version=4)
    # once the stream grows, the same page is settled
    await append_ok(client, "Order-1", event_body())
    again = await client.get("/streams/Order-1", params={"limit": 2, "from": 3})
    assert_page(again, [3, 4], "/streams/Order-1?from=5&limit=2", IMMUTABLE)


async def test_reading_past_the_end_is_an_empty_page(client: httpx.AsyncClient) -> None:
    await fill(client, "Order-1", 5)
    for start in (6, 1000, 2**63 - 1):
        past = await client.get("/streams/Order-1", params={"from": start})
        assert_page(past, [], None, "no-cache")
    backward = await client.get(
        "/streams/Order-1", params={"from": 9, "direction": "backward", "limit": 2}
    )
    assert versions(backward) == [5, 4]


async def test_a_missing_stream_is_404(client: httpx.AsyncClient) -> None:
    await fill(client, "Order-1", 1)
    for params in ({}, {"from": 3}, {"direction": "backward"}):
        response = await client.get("/streams/Order-2", params=params)
        assert_problem(response, 404, "stream-not-found", stream_id="Order-2")
        assert "etag" not in response.headers
    # stream ids are case-sensitive
    response = await client.get("/streams/order-1")
    assert_problem(response, 404, "stream-not-found", stream_id="order-1")
    # a stream whose only append was refused does not exist either
    refused = await client.post(
        "/streams/Order-3", json={"events": [event_body()]}, headers={"If-Match": '"2"'}
    )
    assert refused.status_code == 412
    assert_problem(
        await client.get("/streams/Order-3"), 404, "stream-not-found", stream_id="Order-3"
    )


async def test_if_none_match_gives_304_while_the_version_holds(
    client: httpx.AsyncClient,
) -> None:
    await fill(client, "Order-1", 3)
    for tag in ('"3"', '"2", "3"', 'W/"3"', "*"):
        response = await client.get("/streams/Order-1", headers={"If-None-Match": tag})
        assert response.status_code == 304, tag
        assert response.headers["etag"] == '"3"'
        assert response.content == b""
    stale = await client.get("/streams/Order-1", headers={"If-None-Match": '"2"'})
    assert stale.status_code == 200
    assert stale.headers["etag"] == '"3"'
    await append_ok(client, "Order-1", event_body())
    moved = await client.get("/streams/Order-1", headers={"If-None-Match": '"3"'})
    assert moved.status_code == 200
    assert versions(moved) == [1, 2, 3, 4]
    missing = await client.get("/streams/Order-9", headers={"If-None-Match": '"0"'})
    assert_problem(missing, 404, "stream-not-found", stream_id="Order-9")


async def test_head_has_the_status_and_headers_of_get_without_a_body(
    client: httpx.AsyncClient,
) -> None:
    await fill(client, "Order-1", 5)
    requests: list[tuple[str, dict[str, Any], dict[str, str]]] = [
        ("/streams/Order-1", {}, {}),
        ("/streams/Order-1", {"limit": 2}, {}),
        ("/streams/Order-1", {"limit": 2, "direction": "backward", "from": 4}, {}),
        ("/streams/Order-1", {}, {"If-None-Match": '"5"'}),
        ("/streams/Order-1", {}, {"If-None-Match": '"4"'}),
        ("/streams/Order-2", {}, {}),
        ("/streams/Order-1", {"limit": 0}, {}),
    ]
    for url, params, headers in requests:
        get = await client.get(url, params=params, headers=headers)
        head = await client.head(url, params=params, headers=headers)
        assert head.status_code == get.status_code, (url, params, headers)
        assert head.content == b""
        names = ("etag", "cache-control", "link", "content-type", "content-length")
        assert {n: head.headers.get(n) for n in names} == {n: get.headers.get(n) for n in names}
    assert (await client.head("/streams/Order-2")).status_code == 404


async def test_one_event_by_version(client: httpx.AsyncClient) -> None:
    events = [event_body(type="OrderPlaced", data={"total": 42}), event_body(type="OrderPaid")]
    await append_ok(client, "Order-1", event_body())
    await append_ok(client, "Order-2", *events)
    response = await client.get("/streams/Order-2/1")
    assert response.status_code == 200
    assert response.headers["cache-control"] == IMMUTABLE
    event = response.json()
    recorded_at = event.pop("recorded_at")
    assert TIMESTAMP.fullmatch(recorded_at), recorded_at
    assert event == {
        "id": events[0]["id"],
        "stream_id": "Order-2",
        "type": "OrderPlaced",
        "version": 1,
        "position": 2,
        "data": {"total": 42},
        "metadata": {},
        "tags": [],
    }
    page = (await client.get("/streams/Order-2")).json()
    assert page["events"][0] == {**event, "recorded_at": recorded_at}


async def test_a_missing_event_is_404(client: httpx.AsyncClient) -> None:
    await fill(client, "Order-1", 2)
    for url in ("/streams/Order-1/3", "/streams/Order-2/1", "/streams/Order-1/9223372036854775807"):
        assert_problem(await client.get(url), 404, "event-not-found")


STREAMS = ["Order", "Order-1", "Order-10", "Order-2", "Orders", "User-1", "user-2"]


async def list_all(client: httpx.AsyncClient, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Follow `next` to the end, checking Link on every page."""
    found: list[dict[str, Any]] = []
    response = await client.get("/streams", params=params)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"streams", "next"}
        found += body["streams"]
        if body["next"] is None:
            assert "link" not in response.headers
            return found
        assert response.headers["link"] == f'<{body["next"]}>; rel="next"'
        response = await client.get(body["next"])


async def test_list_streams(client: httpx.AsyncClient) -> None:
    empty = await client.get("/streams")
    assert empty.json() == {"streams": [], "next": None}
    for n, stream_id in enumerate(reversed(STREAMS)):
        await fill(client, stream_id, n + 1)
    await append_ok(client, "Order-1", event_body())

    everything = (await client.get("/streams")).json()
    assert everything["next"] is None
    assert [s["stream_id"] for s in everything["streams"]] == STREAMS
    by_id = {s["stream_id"]: s for s in everything["streams"]}
    order_1 = by_id["Order-1"]
    assert set(order_1) == {"stream_id", "category", "version", "created_at", "updated_at"}
    assert (order_1["category"], order_1["version"]) == ("Order", 7)
    assert TIMESTAMP.fullmatch(order_1["created_at"])
    assert order_1["updated_at"] >= order_1["created_at"]
    assert by_id["Order"]["category"] == "Order"
    assert by_id["Orders"]["category"] == "Orders"
    assert by_id["user-2"]["version"] == 1

    def ids(found: list[dict[str, Any]]) -> list[str]:
        return [s["stream_id"] for s in found]

    assert ids(await list_all(client, {"prefix": "Order-"})) == ["Order-1", "Order-10", "Order-2"]
    assert ids(await list_all(client, {"prefix": "Order"})) == STREAMS[:5]
    assert ids(await list_all(client, {"category": "Order"})) == STREAMS[:4]
    assert ids(await list_all(client, {"category": ["Order", "user"]})) == [*STREAMS[:4], "user-2"]
    assert ids(await list_all(client, {"after": "Order-10"})) == STREAMS[3:]
    assert ids(await list_all(client, {"after": "Order-10", "category": "Order"})) == ["Order-2"]
    assert ids(await list_all(client, {"category": "Nope"})) == []

    first = await client.get(
        "/streams", params={"limit": 2, "prefix": "Order", "category": "Order"}
    )
    assert first.json()["next"] == "/streams?after=Order-1&limit=2&prefix=Order&category=Order"
    for limit in (1, 2, 3, 7):
        assert ids(await list_all(client, {"limit": limit})) == STREAMS
        paged = await list_all(client, {"limit": limit, "category": ["Order", "User"]})
        assert ids(paged) == [*STREAMS[:4], "User-1"]


async def test_stream_listing_rejects_an_invalid_category(client: httpx.AsyncClient) -> None:
    response = await client.get("/streams", params={"category": ["Order", "$bad"]})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"parameter": "category", "detail": "'$bad' is not a valid category"}
    ]
