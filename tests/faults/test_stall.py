"""The database connection stalls (a proxy between the API and PostgreSQL forwards
nothing): requests fail with 503 within the timeout settings instead of hanging, and the
service recovers by itself when the path flows again; then the history checker."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from app.main import create_app
from app.settings import Settings
from tests.conftest import create_pg_database, drop_pg_database, pg_url
from tests.support.factories import append_body
from tests.support.history import (
    History,
    Target,
    Workload,
    check,
    read_state,
    settle_all,
    wait_acknowledged,
    wait_success_since,
)
from tests.support.proxy import StallingProxy
from tests.support.seed import run_seed

WRITERS = 4
TIMEOUTS: dict[str, Any] = {
    "connect_timeout_seconds": 1,
    "pool_timeout_seconds": 1,
    "statement_timeout_seconds": 2,
}
BOUND = sum(TIMEOUTS.values()) + 1  # the longest a request may take while stalled


@pytest.fixture
def pg_database(pg_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database; not through the `backend` parameter, so that the
    expected failure below is not reported as a skipped backend test by CI."""
    name = create_pg_database(pg_template)
    try:
        yield pg_url(name)
    finally:
        drop_pg_database(name)


@pytest.fixture
async def proxied(pg_database: str) -> AsyncIterator[tuple[StallingProxy, httpx.AsyncClient]]:
    url = make_url(pg_database)
    proxy = StallingProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    settings = Settings(
        database_url=url.set(host="127.0.0.1", port=proxy.port).render_as_string(False),
        migrate_on_start=False,
        retry_after_seconds=1,
        **TIMEOUTS,
    )
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://evstore") as c:
                yield proxy, c
    finally:
        await proxy.cut()  # first: what is still stalled is ended, not let through
        proxy.flow()


async def probe(client: httpx.AsyncClient, method: str, path: str) -> tuple[int, str | None]:
    """One request that must answer within BOUND: its status and Retry-After."""
    started = time.monotonic()
    body = append_body() if method == "POST" else None
    try:
        response = await asyncio.wait_for(client.request(method, path, json=body), BOUND)
    except TimeoutError:
        raise AssertionError(f"{method} {path} hung for {BOUND}s") from None
    assert time.monotonic() - started < BOUND
    return response.status_code, response.headers.get("retry-after")


@pytest.mark.parametrize("fault", ["cut", "stall"])
async def test_database_path_fault_is_503_within_the_timeout_and_recovers(
    proxied: tuple[StallingProxy, httpx.AsyncClient], fault: str
) -> None:
    proxy, client = proxied
    seed = run_seed()
    history = History()
    workload = Workload(history, random.Random(seed))
    target = Target("")
    writers = asyncio.create_task(workload.run([client], target, WRITERS, None))
    try:
        await wait_acknowledged(history, 20)
        await (proxy.cut() if fault == "cut" else asyncio.to_thread(proxy.stall))
        answers = await asyncio.gather(
            probe(client, "GET", "/events"),
            probe(client, "GET", "/streams/Order-1"),
            probe(client, "POST", "/streams/Probe-1"),
            return_exceptions=True,
        )
        assert answers == [(503, "1")] * 3
        await (proxy.start() if fault == "cut" else asyncio.to_thread(proxy.flow))
        await wait_success_since(history, time.monotonic(), f"an append after the {fault}", 30)
        workload.finish()
        await asyncio.wait_for(writers, 30)
        await settle_all(client, target, history)
        state = await read_state(client)
    finally:
        proxy.flow()
        writers.cancel()
        await asyncio.gather(writers, return_exceptions=True)

    assert check(history, state) == [], f"seed {seed}: {history.summary()}"
    assert not {s for s in history.statuses() if s is not None and s != 503 and s >= 500}
