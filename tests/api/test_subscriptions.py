"""Durable subscriptions and checkpoints (contract section 7) on both backends."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest

from app.main import create_app
from app.settings import Settings
from tests.api import client_of
from tests.support.factories import append_body, event_body


async def append(client: httpx.AsyncClient, stream: str, n: int = 1) -> None:
    body = append_body(*(event_body() for _ in range(n)))
    assert (await client.post(f"/streams/{stream}", json=body)).status_code == 201


async def test_create_get_list_delete(client: httpx.AsyncClient) -> None:
    await append(client, "Order-1", 3)
    filt = {"category": ["Order", "Invoice"], "type": ["Happened"]}
    created = await client.put("/subscriptions/billing", json={**filt, "start": "beginning"})
    assert created.status_code == 201, created.text
    assert created.headers["etag"] == '"0"'
    body = created.json()
    assert body["filter"] == {
        "stream": [],
        "category": ["Invoice", "Order"],
        "type": ["Happened"],
        "tag": [],
    }
    assert (body["position"], body["head"], body["lag"]) == (0, 3, 3)
    again = await client.put(
        "/subscriptions/billing", json={"type": ["Happened"], "category": ["Invoice", "Order"]}
    )
    assert (again.status_code, again.json()["position"]) == (200, 0)
    other = await client.put("/subscriptions/billing", json={"category": ["User"]})
    assert other.status_code == 409
    assert {k: other.json()[k] for k in ("type", "status", "name")} == {
        "type": "/problems/subscription-conflict",
        "status": 409,
        "name": "billing",
    }
    got = await client.get("/subscriptions/billing")
    assert (got.status_code, got.headers["etag"], got.json()["lag"]) == (200, '"0"', 3)
    await client.put("/subscriptions/audit", json={"start": "end"})
    listed = (await client.get("/subscriptions")).json()
    assert [s["name"] for s in listed["subscriptions"]] == ["audit", "billing"]
    assert listed["subscriptions"][0]["position"] == 3
    assert (await client.delete("/subscriptions/billing")).status_code == 204
    gone = await client.get("/subscriptions/billing")
    assert (gone.status_code, gone.json()["type"]) == (404, "/problems/subscription-not-found")


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"start": 99}, "/start"),
        ({"start": -1}, "/start"),
        ({"start": "middle"}, "/start"),
        ({"stream": ["$bad"]}, "/stream/0"),
        ({"type": "Placed"}, "/type"),
        ({"filter": {}}, "/filter"),
        ({"type": ["Placed\n"]}, "/type/0"),
        ({"stream": ["Order-1\n"]}, "/stream/0"),
    ],
)
async def test_bad_subscriptions_are_422(
    client: httpx.AsyncClient, body: dict[str, object], pointer: str
) -> None:
    response = await client.put("/subscriptions/s1", json=body)
    assert response.status_code == 422, response.text
    assert pointer in [e["pointer"] for e in response.json()["errors"]]
    assert (await client.get("/subscriptions/s1")).status_code == 404


async def test_checkpoint_bounds_and_conditions(client: httpx.AsyncClient) -> None:
    await append(client, "Order-1", 5)
    await client.put("/subscriptions/s1", json={})
    moved = await client.put(
        "/subscriptions/s1/checkpoint", json={"position": 2}, headers={"If-Match": '"0"'}
    )
    assert (moved.status_code, moved.headers["etag"], moved.json()["lag"]) == (200, '"2"', 3)
    lost = await client.put(
        "/subscriptions/s1/checkpoint", json={"position": 4}, headers={"If-Match": '"0"'}
    )
    assert lost.status_code == 412
    assert lost.headers["etag"] == '"2"'
    assert {k: lost.json()[k] for k in ("type", "name", "expected", "position")} == {
        "type": "/problems/checkpoint-moved",
        "name": "s1",
        "expected": '"0"',
        "position": 2,
    }
    beyond = await client.put("/subscriptions/s1/checkpoint", json={"position": 6})
    assert (beyond.status_code, beyond.json()["errors"][0]["pointer"]) == (422, "/position")
    negative = await client.put("/subscriptions/s1/checkpoint", json={"position": -1})
    assert negative.status_code == 422
    bad_tag = await client.put(
        "/subscriptions/s1/checkpoint", json={"position": 1}, headers={"If-Match": "2"}
    )
    assert bad_tag.status_code == 400
    extra = await client.put("/subscriptions/s1/checkpoint", json={"position": 1, "bogus": 1})
    assert (extra.status_code, extra.json()["errors"][0]["pointer"]) == (422, "/bogus")
    missing = await client.put("/subscriptions/nope/checkpoint", json={"position": 1})
    assert missing.status_code == 404
    assert (await client.get("/subscriptions/s1")).json()["position"] == 2


async def test_events_page_after_the_checkpoint(client: httpx.AsyncClient) -> None:
    await append(client, "Order-1", 2)
    await append(client, "User-1", 3)
    await append(client, "Order-2", 1)
    await client.put("/subscriptions/orders", json={"category": ["Order"]})
    page = (await client.get("/subscriptions/orders/events", params={"limit": 2})).json()
    assert [e["position"] for e in page["events"]] == [1, 2]
    assert page["next_after"] == 2
    # nothing moves until the consumer stores the checkpoint: at least once
    again = (await client.get("/subscriptions/orders/events", params={"limit": 2})).json()
    assert again == page
    await client.put("/subscriptions/orders/checkpoint", json={"position": page["next_after"]})
    rest = (await client.get("/subscriptions/orders/events")).json()
    assert [e["position"] for e in rest["events"]] == [6]
    assert rest["next_after"] == 6


async def test_events_long_poll_wakes_on_a_match(client: httpx.AsyncClient) -> None:
    await client.put("/subscriptions/s1", json={"stream": ["Late-1"]})
    poll = asyncio.create_task(client.get("/subscriptions/s1/events", params={"wait": 30}))
    await append(client, "Other-1")
    await append(client, "Late-1")
    page = (await poll).json()
    assert [e["stream_id"] for e in page["events"]] == ["Late-1"]


async def test_killed_consumer_resumes_from_checkpoint(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """A consumer processes part of the log, dies at a random moment (possibly after
    processing and before storing its checkpoint), a new one carries on."""
    rng = random.Random(11)
    for i in range(40):
        await append(client, f"{'Order' if i % 3 else 'User'}-{i % 5}", 1 + i % 2)
    await client.put("/subscriptions/worker", json={"category": ["Order"]})
    processed: list[int] = []

    async def consume(stop_after: int | None) -> None:
        batches = 0
        while True:
            page = (await client.get("/subscriptions/worker/events", params={"limit": 4})).json()
            if not page["events"]:
                return
            for event in page["events"]:
                processed.append(event["position"])
                if stop_after is not None and len(processed) >= stop_after:
                    raise asyncio.CancelledError  # killed before storing the checkpoint
            await client.put(
                "/subscriptions/worker/checkpoint", json={"position": page["next_after"]}
            )
            batches += 1

    for _ in range(3):
        with pytest.raises(asyncio.CancelledError):
            await consume(stop_after=len(processed) + rng.randint(1, 7))
    await consume(stop_after=None)
    log = (await client.get("/events", params={"category": "Order", "limit": 1000})).json()
    expected = [e["position"] for e in log["events"]]
    assert sorted(set(processed)) == expected  # every match at least once, none skipped
    # Each kill came before its page's checkpoint, so those events were delivered again.
    assert len(processed) > len(set(processed))
    final = (await client.get("/subscriptions/worker")).json()
    assert final["position"] == log["head"]


async def test_racing_consumers_one_wins(client: httpx.AsyncClient) -> None:
    await append(client, "Order-1", 10)
    await client.put("/subscriptions/race", json={})
    results = await asyncio.gather(
        *(
            client.put(
                "/subscriptions/race/checkpoint", json={"position": p}, headers={"If-Match": '"0"'}
            )
            for p in range(1, 11)
        )
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [200] + [412] * 9
    (winner,) = [r for r in results if r.status_code == 200]
    stored = (await client.get("/subscriptions/race")).json()["position"]
    assert winner.json()["position"] == stored


async def test_checkpoint_survives_a_restart(settings: Settings) -> None:
    for round_ in range(2):
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                if round_ == 0:
                    await append(client, "Order-1", 3)
                    await client.put("/subscriptions/keep", json={})
                    await client.put("/subscriptions/keep/checkpoint", json={"position": 2})
                else:
                    assert (await client.get("/subscriptions/keep")).json()["position"] == 2


async def test_metrics_report_lag(client: httpx.AsyncClient) -> None:
    await append(client, "Order-1", 4)
    await client.put("/subscriptions/lagging", json={})
    await client.put("/subscriptions/lagging/checkpoint", json={"position": 1})
    text = (await client.get("/metrics")).text
    assert 'evstore_subscription_lag{name="lagging"} 3.0' in text


async def test_metrics_keep_lag_series_for_those_furthest_behind(settings: Settings) -> None:
    few = settings.model_copy(update={"metrics_max_subscriptions": 2})
    async with client_of(few) as client:
        await append(client, "Order-1", 5)
        for name, position in [("a", 5), ("b", 1), ("c", 4), ("d", 0), ("e", 5)]:
            await client.put(f"/subscriptions/{name}", json={})
            checkpoint = {"position": position}
            await client.put(f"/subscriptions/{name}/checkpoint", json=checkpoint)
        text = (await client.get("/metrics")).text
    series = sorted(
        line for line in text.splitlines() if line.startswith("evstore_subscription_lag{")
    )
    assert series == [
        'evstore_subscription_lag{name="b"} 4.0',
        'evstore_subscription_lag{name="d"} 5.0',
    ]
    assert "evstore_subscriptions 5.0" in text
