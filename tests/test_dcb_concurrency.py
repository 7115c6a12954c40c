"""Conditional appends under concurrency (contract section 11, DESIGN section 8): of
racers whose conditions each exclude the others' events, with the same `after`,
exactly one succeeds per round; racers on disjoint boundaries never fail because of
each other. In one process (the racers meet in the writer's batches) and across two
server processes on PostgreSQL (they meet on the log_head lock)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.factories import event_body
from tests.support.servers import running_servers

ROUNDS = 8


def claim(stream_id: str, boundary: str, after: int) -> dict[str, Any]:
    """An append that claims `boundary` unless someone claimed it after `after`."""
    return {
        "events": [{**event_body(type="SeatTaken"), "stream_id": stream_id, "tags": [boundary]}],
        "condition": {
            "fail_if_events_match": {"items": [{"types": ["SeatTaken"], "tags": [boundary]}]},
            "after": after,
        },
    }


async def race(clients: list[httpx.AsyncClient], racers: int, rounds: int) -> list[int]:
    """Rounds of `racers` appends released together on one boundary; per round the
    number of 201s. Checks every 409 names a matching position above `after`."""
    wins = []
    for r in range(rounds):
        head = (await clients[0].get("/events?limit=1")).json()["head"]
        answers = await one_round(clients, racers, r, head)
        statuses = sorted(a.status_code for a in answers)
        assert set(statuses) <= {201, 409}, [a.text for a in answers if a.status_code >= 500]
        winner = [a for a in answers if a.status_code == 201]
        for lost in (a for a in answers if a.status_code == 409):
            body = lost.json()
            assert body["type"] == "/problems/append-condition-failed", body
            assert body["matched_position"] > head
        if len(winner) == 1:  # every loser was stopped by the winner's event
            won = winner[0].json()["head"]
            assert all(a.json()["matched_position"] == won for a in answers if a.status_code == 409)
        wins.append(len(winner))
    return wins


async def one_round(
    clients: list[httpx.AsyncClient], racers: int, r: int, head: int
) -> list[httpx.Response]:
    """The racers of round `r`, behind a barrier: all are released at once."""
    gate, all_ready = asyncio.Event(), asyncio.Event()
    ready = 0

    async def racer(i: int) -> httpx.Response:
        nonlocal ready
        body = claim(f"Racer-{r}-{i}", "seat:1", head)
        ready += 1
        if ready == racers:
            all_ready.set()
        await gate.wait()
        return await clients[i % len(clients)].post("/events", json=body)

    tasks = [asyncio.create_task(racer(i)) for i in range(racers)]
    await all_ready.wait()
    gate.set()
    return list(await asyncio.gather(*tasks))


async def claimed(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    query = {"query": {"items": [{"types": ["SeatTaken"]}]}, "limit": 1000}
    page: list[dict[str, Any]] = (await client.post("/events/query", json=query)).json()["events"]
    return page


@pytest.mark.parametrize("racers", [16, 64])
async def test_racers_in_one_process_one_wins_each_round(
    client: httpx.AsyncClient, racers: int
) -> None:
    wins = await race([client], racers, ROUNDS)
    assert wins == [1] * ROUNDS
    assert len(await claimed(client)) == ROUNDS


async def test_disjoint_boundaries_never_conflict(client: httpx.AsyncClient) -> None:
    async def writer(w: int) -> list[int]:
        statuses = []
        for n in range(10):
            head = (await client.get("/events?limit=1")).json()["head"]
            body = claim(f"Writer-{w}", f"writer:{w}:{n}", head)
            statuses.append((await client.post("/events", json=body)).status_code)
        return statuses

    results = await asyncio.gather(*(writer(w) for w in range(20)))
    assert {s for statuses in results for s in statuses} == {201}
    assert len(await claimed(client)) == 200


@pytest.mark.postgres_only
@pytest.mark.parametrize("racers", [16, 64])
async def test_racers_across_two_processes_one_wins_each_round(
    database_url: str, tmp_path: Path, racers: int
) -> None:
    with running_servers(database_url, tmp_path, count=2) as servers:
        limits = httpx.Limits(max_connections=racers + 4)
        clients = [httpx.AsyncClient(base_url=s.url, timeout=60, limits=limits) for s in servers]
        try:
            wins = await race(clients, racers, ROUNDS)
            events = await claimed(clients[0])
        finally:
            for c in clients:
                await c.aclose()
    assert wins == [1] * ROUNDS
    assert len(events) == ROUNDS
