"""SIGTERM while 8 writers append and subscribers follow the log: in-flight appends
complete or are not acknowledged (a cut-off request is an unknown outcome, settled by a
retry against a new process on the same database), live streams end, and the process
exits within 10 s; then the history checker, across the restart."""

from __future__ import annotations

import asyncio
import random
import signal
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
    wait_acknowledged,
    wait_for,
)
from tests.support.process import started
from tests.support.seed import run_seed

WRITERS = 8
SUBSCRIBERS = 10
EXIT_SECONDS = 10


@pytest.mark.slow
async def test_sigterm_under_load_closes_streams_and_exits(
    database_url: str, tmp_path: Path
) -> None:
    seed = run_seed()
    rng = random.Random(seed)
    history = History([], [Subscriber() for _ in range(SUBSCRIBERS)])
    workload = Workload(history, random.Random(rng.random()))
    server = await started(database_url, tmp_path / "server-0.log", live_keepalive_seconds=1)
    target = Target(server.url)
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits()) as client:
        followers = [asyncio.create_task(follow(client, target, s)) for s in history.subscribers]
        writers = asyncio.create_task(workload.run([client], target, WRITERS, None))
        try:
            await wait_acknowledged(history, rng.randint(20, 80))
            await wait_for(
                lambda: all(s.position > 0 for s in history.subscribers), "subscribers to be live"
            )
            open_streams = [(s, len(s.connections) - 1) for s in history.subscribers]
            server.process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(server.process.wait, EXIT_SECONDS)
            first = server
            await wait_for(
                lambda: all(s.connections[i].error for s, i in open_streams),
                "the live streams to end",
                5,
            )
            server = await started(database_url, tmp_path / "server-1.log")
            target.url = server.url
            await wait_acknowledged(history, 20)
            workload.finish()
            await asyncio.wait_for(writers, 30)
            await settle_all(client, target, history)
            state = await read_state(client, target.url)
            await wait_for(
                lambda: all(s.position == state.head for s in history.subscribers),
                "every subscriber to reach the head",
            )
        finally:
            writers.cancel()
            for task in followers:
                task.cancel()
            await asyncio.gather(writers, *followers, return_exceptions=True)
            server.stop()

    assert code == -signal.SIGTERM  # uvicorn re-raises the signal after a clean shutdown
    assert check(history, state) == [], f"seed {seed}: {history.summary()}"
    assert not {s for s in history.statuses() if s is not None and s >= 500}, history.summary()
    assert "Traceback" not in first.output()
