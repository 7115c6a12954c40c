"""Operations: request ids, JSON logs without event data, health, metrics."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from app.api.log_format import JsonFormatter
from tests.support.factories import append_body, event_body


async def test_request_id_is_echoed_or_made(client: httpx.AsyncClient) -> None:
    given = await client.get("/health", headers={"X-Request-ID": "trace-42.a:b"})
    assert given.headers["x-request-id"] == "trace-42.a:b"
    made = (await client.get("/health")).headers["x-request-id"]
    assert len(made) == 32 and int(made, 16) >= 0
    hostile = await client.get("/nope", headers={"X-Request-ID": "a b\tc" + "x" * 200})
    assert hostile.status_code == 404
    assert hostile.headers["x-request-id"] not in ("a b\tc" + "x" * 200,)
    assert len(hostile.headers["x-request-id"]) == 32


async def test_logs_are_json_with_request_id_and_no_event_data(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "card-4111-1111-1111-1111"
    caplog.set_level(logging.INFO)  # the service's default level
    response = await client.post(
        "/streams/Order-1",
        json=append_body(event_body(data={"card": secret}, metadata={"note": secret})),
        headers={"X-Request-ID": "req-1"},
    )
    assert response.status_code == 201
    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records]
    access = [x for x in lines if x["logger"] == "evstore.access"]
    assert access == [
        {
            **access[0],
            "method": "POST",
            "route": "/streams/{stream_id}",
            "status": 201,
            "request_id": "req-1",
        }
    ]
    assert isinstance(access[0]["duration_ms"], float)
    assert all(secret not in formatter.format(r) for r in caplog.records)


async def test_health_live_and_ready(client: httpx.AsyncClient) -> None:
    live = await client.get("/health/live")
    assert (live.status_code, live.json()["status"]) == (200, "ok")
    ready = (await client.get("/health/ready")).json()
    assert ready == {"status": "ok", "database": "ok", "head": 0}
    assert (await client.get("/health")).json() == ready


async def test_metrics_cover_appends_conflicts_and_batches(client: httpx.AsyncClient) -> None:
    first = await client.post("/streams/M-1", json=append_body())
    assert first.status_code == 201
    stale = await client.post("/streams/M-1", json=append_body(), headers={"If-Match": '"0"'})
    assert stale.status_code == 412
    body = first.json()
    reused = {"events": [{"id": body["events"][0]["id"], "type": "Again", "data": {}}]}
    duplicate = await client.post("/streams/M-2", json=reused)
    assert duplicate.status_code == 409
    text = (await client.get("/metrics")).text
    for line in [
        'evstore_append_conflicts_total{reason="wrong_expected_version"} 1.0',
        'evstore_append_conflicts_total{reason="duplicate_event_id"} 1.0',
        'evstore_appends_total{outcome="created"} 1.0',
        'evstore_appends_total{outcome="wrong_expected_version"} 1.0',
        "evstore_events_appended_total 1.0",
        "evstore_append_batch_requests_count 3.0",
        "evstore_head_position 1.0",
        "evstore_live_subscribers 0.0",
        'evstore_http_requests_total{method="POST",route="/streams/{stream_id}",status="412"} 1.0',
    ]:
        assert line in text, line
