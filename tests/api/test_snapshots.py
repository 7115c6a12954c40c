"""Snapshots (contract section 6) on both backends."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.support.factories import append_body, event_body


async def seed(client: httpx.AsyncClient, stream: str = "Order-1", n: int = 3) -> None:
    body = append_body(*(event_body() for _ in range(n)))
    assert (await client.post(f"/streams/{stream}", json=body)).status_code == 201


async def test_put_get_delete_round_trip(client: httpx.AsyncClient) -> None:
    await seed(client)
    state = {"total": 2**70, "lines": [1, 2.5, None, "é"], "big": 1e16}
    put = await client.put("/streams/Order-1/snapshot", json={"version": 2, "data": state})
    assert put.status_code == 200, put.text
    stored = put.json()
    assert {k: stored[k] for k in ("stream_id", "version", "data", "metadata")} == {
        "stream_id": "Order-1",
        "version": 2,
        "data": state,
        "metadata": {},
    }
    assert stored["created_at"].endswith("Z")
    assert (await client.get("/streams/Order-1/snapshot")).json() == stored
    assert isinstance(stored["data"]["big"], float)  # not the integer 10000000000000000
    # the two-request pattern: snapshot, then the events after it
    rest = (await client.get("/streams/Order-1", params={"from": stored["version"] + 1})).json()
    assert [e["version"] for e in rest["events"]] == [3]
    assert (await client.delete("/streams/Order-1/snapshot")).status_code == 204
    missing = await client.get("/streams/Order-1/snapshot")
    assert missing.status_code == 404
    assert missing.json() == {
        "type": "/problems/snapshot-not-found",
        "title": "Snapshot not found",
        "status": 404,
        "detail": "stream 'Order-1' has no snapshot",
        "stream_id": "Order-1",
    }
    assert (await client.delete("/streams/Order-1/snapshot")).status_code == 204


async def test_only_the_newest_is_kept(client: httpx.AsyncClient) -> None:
    await seed(client)
    assert (
        await client.put("/streams/Order-1/snapshot", json={"version": 3, "data": 3})
    ).status_code == 200
    same = await client.put("/streams/Order-1/snapshot", json={"version": 3, "data": "again"})
    assert (same.status_code, same.json()["data"]) == (200, "again")
    stale = await client.put("/streams/Order-1/snapshot", json={"version": 2, "data": 2})
    assert stale.status_code == 409
    assert stale.headers["content-type"] == "application/problem+json"
    assert {k: stale.json()[k] for k in ("type", "status", "stream_id", "stored_version")} == {
        "type": "/problems/stale-snapshot",
        "status": 409,
        "stream_id": "Order-1",
        "stored_version": 3,
    }
    assert (await client.get("/streams/Order-1/snapshot")).json()["data"] == "again"


async def test_concurrent_puts_leave_the_newest(client: httpx.AsyncClient) -> None:
    await seed(client, n=20)
    results = await asyncio.gather(
        *(
            client.put("/streams/Order-1/snapshot", json={"version": v, "data": v})
            for v in range(1, 21)
        )
    )
    assert {r.status_code for r in results} <= {200, 409}
    assert (await client.get("/streams/Order-1/snapshot")).json()["version"] == 20


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"version": 0, "data": 1}, "/version"),
        ({"version": 4, "data": 1}, "/version"),
        ({"version": "2", "data": 1}, "/version"),
        ({"version": 1}, "/data"),
        ({"version": 1, "data": 1, "metadata": []}, "/metadata"),
        ({"version": 1, "data": {"a": "\u0000"}}, "/data/a"),
        ({"version": 1, "data": 1, "extra": 1}, "/extra"),
    ],
)
async def test_bad_snapshots_are_422_and_store_nothing(
    client: httpx.AsyncClient, body: dict[str, object], pointer: str
) -> None:
    await seed(client)
    response = await client.put("/streams/Order-1/snapshot", json=body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"] == "/problems/validation-error"
    assert pointer in [e["pointer"] for e in problem["errors"]]
    assert (await client.get("/streams/Order-1/snapshot")).status_code == 404


async def test_snapshot_of_a_missing_stream_is_422(client: httpx.AsyncClient) -> None:
    response = await client.put("/streams/Nope-1/snapshot", json={"version": 1, "data": 1})
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "/version"


async def test_snapshot_limits_and_media_type(client: httpx.AsyncClient, app: object) -> None:
    await seed(client)
    big = {"version": 1, "data": "x" * (1024 * 1024 + 1)}
    too_big = await client.put("/streams/Order-1/snapshot", json=big)
    assert too_big.status_code == 413
    assert too_big.json()["limit"] == "max_event_bytes"
    wrong = await client.put("/streams/Order-1/snapshot", content=b'{"version":1,"data":1}')
    assert wrong.status_code == 415
    dup = await client.put(
        "/streams/Order-1/snapshot",
        content=b'{"version":1,"version":2}',
        headers={"content-type": "application/json"},
    )
    assert (dup.status_code, dup.json()["type"]) == (400, "/problems/malformed-json")
