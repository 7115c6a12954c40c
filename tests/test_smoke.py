from __future__ import annotations

import httpx

from tests.support.factories import append_body


async def test_append_and_read_back(client: httpx.AsyncClient) -> None:
    created = await client.post("/streams/Order-1", json=append_body())
    assert created.status_code == 201, created.text
    read = await client.get("/streams/Order-1")
    assert read.status_code == 200
    assert [e["version"] for e in read.json()["events"]] == [1]
