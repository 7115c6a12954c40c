"""Optimistic concurrency and idempotency under concurrent requests (DESIGN section 4,
contract sections 2 and 9): of N racing appends with one expected version exactly one
wins; appends without a precondition all land, at versions 1..N; identical requests
write once and answer every copy with the original receipt.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.factories import append_body, event_body
from tests.support.servers import running_servers

N = 32


async def race(
    clients: list[httpx.AsyncClient],
    stream_id: str,
    bodies: list[dict[str, Any]],
    headers: dict[str, str] | None = None,
) -> list[httpx.Response]:
    """Send every body at once, spread round-robin over the clients."""
    return await asyncio.gather(
        *(
            clients[i % len(clients)].post(f"/streams/{stream_id}", json=body, headers=headers)
            for i, body in enumerate(bodies)
        )
    )


async def read_stream(client: httpx.AsyncClient, stream_id: str) -> dict[str, Any]:
    response = await client.get(f"/streams/{stream_id}", params={"limit": 1000})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def log_ids(client: httpx.AsyncClient) -> list[str]:
    response = await client.get("/events", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return [e["id"] for e in response.json()["events"]]


async def seed(client: httpx.AsyncClient, stream_id: str, count: int) -> list[str]:
    sent = [event_body() for _ in range(count)]
    response = await client.post(f"/streams/{stream_id}", json=append_body(*sent))
    assert response.status_code == 201, response.text
    return [e["id"] for e in sent]


async def check_exactly_one_wins(
    clients: list[httpx.AsyncClient], stream_id: str, header: tuple[str, str], version: int
) -> None:
    """N appends to a stream at `version`, all with the same precondition: one 201,
    N - 1 412s that name version + 1; the stream holds the winner's event only."""
    bodies = [append_body(event_body()) for _ in range(N)]
    responses = await race(clients, stream_id, bodies, dict([header]))

    assert Counter(r.status_code for r in responses) == {201: 1, 412: N - 1}
    (winner,) = [i for i, r in enumerate(responses) if r.status_code == 201]
    assert responses[winner].headers["etag"] == f'"{version + 1}"'
    assert responses[winner].json()["version"] == version + 1
    for response in responses:
        if response.status_code != 412:
            continue
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["etag"] == f'"{version + 1}"'
        assert response.json() == {
            "type": "/problems/wrong-expected-version",
            "title": "Wrong expected version",
            "status": 412,
            "detail": f"stream {stream_id!r} is at version {version + 1}, expected {header[1]}",
            "stream_id": stream_id,
            "expected": header[1],
            "current_version": version + 1,
        }
    stream = await read_stream(clients[0], stream_id)
    assert stream["version"] == version + 1
    assert [e["version"] for e in stream["events"]] == list(range(1, version + 2))
    assert stream["events"][-1]["id"] == bodies[winner]["events"][0]["id"]
    losers = {b["events"][0]["id"] for i, b in enumerate(bodies) if i != winner}
    assert losers.isdisjoint(await log_ids(clients[0]))


async def test_same_if_match_one_wins(client: httpx.AsyncClient) -> None:
    await seed(client, "Order-1", 3)
    await check_exactly_one_wins([client], "Order-1", ("If-Match", '"3"'), 3)


async def test_same_if_none_match_star_creates_once(client: httpx.AsyncClient) -> None:
    await check_exactly_one_wins([client], "Order-1", ("If-None-Match", "*"), 0)


@pytest.mark.postgres_only
@pytest.mark.slow
async def test_same_if_match_one_wins_across_two_processes(
    database_url: str, tmp_path: Path
) -> None:
    with running_servers(database_url, tmp_path, count=2) as (one, two):
        async with (
            httpx.AsyncClient(base_url=one.url, timeout=30) as first,
            httpx.AsyncClient(base_url=two.url, timeout=30) as second,
        ):
            await seed(first, "Order-1", 3)
            await check_exactly_one_wins([first, second], "Order-1", ("If-Match", '"3"'), 3)


async def test_appends_without_precondition_all_land(client: httpx.AsyncClient) -> None:
    bodies = [append_body(event_body()) for _ in range(N)]
    responses = await race([client], "Order-1", bodies)

    assert [r.status_code for r in responses] == [201] * N, [r.text for r in responses]
    receipts = {r.json()["events"][0]["id"]: r.json()["events"][0] for r in responses}
    assert sorted(e["version"] for e in receipts.values()) == list(range(1, N + 1))
    assert sorted(e["position"] for e in receipts.values()) == list(range(1, N + 1))
    stream = await read_stream(client, "Order-1")
    assert stream["version"] == N
    assert [e["version"] for e in stream["events"]] == list(range(1, N + 1))
    assert {e["id"] for e in stream["events"]} == set(receipts)
    for e in stream["events"]:
        assert (e["version"], e["position"]) == (
            receipts[e["id"]]["version"],
            receipts[e["id"]]["position"],
        )


@pytest.mark.parametrize("headers", [{}, {"If-None-Match": "*"}], ids=["any", "no-stream"])
async def test_identical_appends_write_once(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    body = append_body(event_body(), event_body())
    responses = await race([client], "Order-1", [body] * N, headers)

    assert Counter(r.status_code for r in responses) == {201: 1, 200: N - 1}
    (created,) = [r for r in responses if r.status_code == 201]
    assert created.json() == {
        "stream_id": "Order-1",
        "version": 2,
        "events": [
            {"id": body["events"][0]["id"], "version": 1, "position": 1},
            {"id": body["events"][1]["id"], "version": 2, "position": 2},
        ],
    }
    for response in responses:
        assert response.json() == created.json()
    stream = await read_stream(client, "Order-1")
    assert [(e["id"], e["version"]) for e in stream["events"]] == [
        (body["events"][0]["id"], 1),
        (body["events"][1]["id"], 2),
    ]
    assert await log_ids(client) == [e["id"] for e in body["events"]]
