"""Server processes for fault tests: start one and wait (off the event loop) until it
answers GET /health."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.support.servers import READY_SECONDS, Server, spawn_server, wait_ready


async def started(database_url: str, log: Path, **settings: object) -> Server:
    server = spawn_server(database_url, log, **settings)
    try:
        await asyncio.to_thread(wait_ready, server, time.monotonic() + READY_SECONDS)
    except BaseException:
        server.process.kill()
        server.process.wait()
        raise
    return server
