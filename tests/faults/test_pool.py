"""Connection pool exhausted: with a pool of 2 connections (no overflow, 1 s pool
timeout), 50 concurrent reads that block in the database (a test transaction holds a
lock on the events table) leave two holding the pool; the excess get 503 with
Retry-After quickly, never a 500 and never a hang. Live subscribers hold no pooled
connection meanwhile, and everything works once the lock is gone; then the checker."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.history import (
    History,
    Operation,
    Subscriber,
    Target,
    attempt,
    check,
    follow,
    read_state,
    wait_for,
)
from tests.support.process import started

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]

READERS = 50
SUBSCRIBERS = 10
POOL_TIMEOUT = 1.0
SETTINGS = {
    "pool_size": 2,
    "pool_max_overflow": 0,
    "pool_timeout_seconds": POOL_TIMEOUT,
    "statement_timeout_seconds": 20,
    "retry_after_seconds": 1,
    "live_poll_seconds": 0.5,
}


async def append(client: httpx.AsyncClient, target: Target, history: History, n: int) -> None:
    for i in range(n):
        events = [{"id": str(uuid.uuid4()), "type": "Placed", "data": {"i": i}}]
        op = Operation(f"Order-{i % 5}", events, {})
        history.operations.append(op)
        assert (await attempt(client, target, op)).status == 201


async def test_excess_requests_get_503_quickly_when_the_pool_is_exhausted(
    database_url: str, tmp_path: Path
) -> None:
    history = History([], [Subscriber() for _ in range(SUBSCRIBERS)])
    server = await started(database_url, tmp_path / "server.log", **SETTINGS)
    target = Target(server.url)
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits()) as client:
        followers = [asyncio.create_task(follow(client, target, s)) for s in history.subscribers]
        try:
            await append(client, target, history, 20)
            # the subscribers are live and idle: if they held connections, the pool of 2
            # would be gone and the append below could not commit
            await wait_for(lambda: all(s.position == 20 for s in history.subscribers), "live")
            await append(client, target, history, 5)
            await wait_for(lambda: all(s.position == 25 for s in history.subscribers), "live")

            async with await psycopg.AsyncConnection.connect(database_url) as lock:
                await lock.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
                reads = [
                    asyncio.create_task(timed_read(client, server.url)) for _ in range(READERS)
                ]
                await wait_for(
                    lambda: sum(r.done() for r in reads) >= READERS - 2, "the excess to fail"
                )
                held = [r for r in reads if not r.done()]
                await lock.rollback()
            answers = await asyncio.gather(*reads)

            await append(client, target, history, 5)
            state = await read_state(client, target.url)
            await wait_for(lambda: all(s.position == 30 for s in history.subscribers), "live")
        finally:
            for task in followers:
                task.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
            server.stop()

    assert check(history, state) == []
    refused = [a for a in answers if a[0] == 503]
    served = [a for a in answers if a[0] == 200]
    assert len(refused) + len(served) == READERS, answers
    assert 1 <= len(held) == len(served) <= 2, answers  # those that got a connection
    assert all(seconds < POOL_TIMEOUT + 2 and retry == "1" for _, seconds, retry, _ in refused)
    assert all(size == 25 for _, _, _, size in served), answers
    assert "Traceback" not in server.output()


async def timed_read(client: httpx.AsyncClient, base: str) -> tuple[int, float, str | None, int]:
    """GET /events: status, seconds taken, Retry-After, events returned."""
    started_at = time.monotonic()
    response = await client.get(f"{base}/events", params={"after": 0, "limit": 1000})
    events = len(response.json()["events"]) if response.status_code == 200 else 0
    return (
        response.status_code,
        time.monotonic() - started_at,
        response.headers.get("retry-after"),
        events,
    )
