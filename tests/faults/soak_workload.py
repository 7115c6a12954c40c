"""The randomized workload, long, against a real server with live subscribers: run by
`make soak` (SOAK_SECONDS, default 600; EVSTORE_TEST_SEED to repeat a run). Not named
test_*.py, so `make test` does not collect it; `make soak` names it explicitly."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import httpx
import pytest

from tests.support.history import (
    History,
    Subscriber,
    Target,
    Workload,
    check,
    follow,
    read_state,
    settle_all,
    wait_for,
)
from tests.support.process import started
from tests.support.seed import run_seed

SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
WRITERS = 8
SUBSCRIBERS = 10


@pytest.mark.slow
@pytest.mark.timeout(SECONDS + 300)
async def test_soak(database_url: str, tmp_path: Path) -> None:
    seed = run_seed()
    history = History([], [Subscriber() for _ in range(SUBSCRIBERS)])
    workload = Workload(history, random.Random(seed), streams=50)
    server = await started(database_url, tmp_path / "server.log", live_keepalive_seconds=5)
    target = Target(server.url)
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits()) as client:
        followers = [asyncio.create_task(follow(client, target, s)) for s in history.subscribers]
        writers = asyncio.create_task(workload.run([client], target, WRITERS, None))
        try:
            await asyncio.sleep(SECONDS)  # the soak's duration, not synchronisation
            workload.finish()
            await asyncio.wait_for(writers, 60)
            await settle_all(client, target, history)
            state = await read_state(client, target.url)
            await wait_for(
                lambda: all(s.position == state.head for s in history.subscribers),
                "every subscriber to reach the head",
                60,
            )
        finally:
            writers.cancel()
            for task in followers:
                task.cancel()
            await asyncio.gather(writers, *followers, return_exceptions=True)
            server.stop()
    print(history.summary())
    assert check(history, state) == [], f"seed {seed}: {history.summary()}"
    assert not {s for s in history.statuses() if s is None or s >= 500}, history.summary()
    assert "Traceback" not in server.output()
