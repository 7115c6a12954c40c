"""Live tests run against real servers: the in-process transport buffers whole
responses, so endless streams need processes on free ports (tests/support/servers.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.servers import READY_SECONDS, Server, spawn_server, wait_ready

ServerFactory = Callable[..., Server]

__all__ = ["Server", "ServerFactory"]


@pytest.fixture
def servers(database_url: str, tmp_path: Path) -> Iterator[ServerFactory]:
    """Start ready servers on the test's database: `servers(live_poll_seconds=0.5)`."""
    started: list[Server] = []

    def start(**settings: object) -> Server:
        log = tmp_path / f"server-{len(started)}.log"
        server = spawn_server(database_url, log, **settings)
        started.append(server)
        wait_ready(server, time.monotonic() + READY_SECONDS)
        return server

    yield start
    for server in started:
        server.stop()
