"""The API process is killed with SIGKILL at random moments while 8 writers append; it
is restarted on the same database and the clients retry their unknown outcomes with
the same ids and preconditions: nothing acknowledged is lost, nothing is doubled."""

from __future__ import annotations

import asyncio
import random
import signal
from pathlib import Path

import httpx
import pytest

from tests.support.history import (
    History,
    Target,
    Workload,
    check,
    read_state,
    settle_all,
    wait_acknowledged,
)
from tests.support.process import started
from tests.support.seed import run_seed

WRITERS = 8
KILLS = 2


@pytest.mark.slow
async def test_sigkill_loses_nothing_and_doubles_nothing(database_url: str, tmp_path: Path) -> None:
    seed = run_seed()
    rng = random.Random(seed)
    history = History()
    workload = Workload(history, random.Random(rng.random()))
    server = await started(database_url, tmp_path / "server-0.log")
    target = Target(server.url)
    async with httpx.AsyncClient(timeout=10) as client:
        writers = asyncio.create_task(workload.run([client], target, WRITERS, None))
        try:
            for kill in range(1, KILLS + 2):
                await wait_acknowledged(history, rng.randint(5, 60))
                if kill > KILLS:
                    break
                server.process.send_signal(signal.SIGKILL)
                assert await asyncio.to_thread(server.process.wait) == -signal.SIGKILL
                server = await started(database_url, tmp_path / f"server-{kill}.log")
                target.url = server.url
            workload.finish()
            await asyncio.wait_for(writers, 30)
            await settle_all(client, target, history)
            state = await read_state(client, target.url)
        finally:
            writers.cancel()
            server.stop()

    assert check(history, state) == [], f"seed {seed}: {history.summary()}"
    statuses = history.statuses()
    assert statuses[None] > 0, "no request was cut off by a kill"
    assert not {s for s in statuses if s is not None and s >= 500}, history.summary()
    assert "Traceback" not in server.output()
