"""Real server processes for tests: `evstore serve` (uvloop, evstore's httptools
protocol, JSON logs) on free ports, against a test database that is already migrated.

The in-process ASGI transport shares one event loop and one engine with the test; tests
of several processes (two APIs on one PostgreSQL) and of endless responses (SSE) need
real servers. Use `running_servers(database_url, log_dir, count=2)` as a context
manager, or wrap it in a fixture. Servers start in parallel and are ready (GET /health
answers 200) when the block is entered; they get SIGTERM, then SIGKILL, on the way out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.tcp_proxy import free_port

ROOT = Path(__file__).resolve().parents[1]
READY_SECONDS = 30.0
STOP_SECONDS = 10.0


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_bytes(self) -> int:
        """The process's resident memory."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS line")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it has not exited in time; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def spawn_server(database_url: str, log: Path, **settings: object) -> Server:
    """Start one server process; it is not ready yet (see `wait_ready`). Extra keyword
    arguments become EVSTORE_* settings: `spawn_server(url, log, live_poll_seconds=0.5)`."""
    port = free_port()
    env = {
        **os.environ,
        "EVSTORE_DATABASE_URL": database_url,
        "EVSTORE_MIGRATE_ON_START": "false",
        "EVSTORE_LOG_LEVEL": "warning",
        **{f"EVSTORE_{name.upper()}": str(value) for name, value in settings.items()},
    }
    env["EVSTORE_HOST"], env["EVSTORE_PORT"] = "127.0.0.1", str(port)
    command = [sys.executable, "-m", "app.cli", "serve"]  # as in production
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    return Server(process, f"http://127.0.0.1:{port}", log)


def wait_ready(server: Server, deadline: float) -> None:
    """Poll GET /health until it answers 200, the process exits, or the deadline passes."""
    while True:
        if server.process.poll() is not None:
            raise AssertionError(
                f"server exited with {server.process.returncode}:\n{server.output()}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.url + "/health", timeout=1).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"server not healthy in {READY_SECONDS}s:\n{server.output()}")
        time.sleep(0.05)  # poll interval while the process starts listening


@contextlib.contextmanager
def running_servers(
    database_url: str, log_dir: Path, count: int = 1, **settings: object
) -> Iterator[list[Server]]:
    """`count` ready servers on one database; each logs to log_dir/server-<i>.log."""
    started: list[Server] = []
    try:
        for i in range(count):
            started.append(spawn_server(database_url, log_dir / f"server-{i}.log", **settings))
        deadline = time.monotonic() + READY_SECONDS
        for server in started:
            wait_ready(server, deadline)
        yield started
    finally:
        for server in started:  # SIGTERM to all first, so they shut down in parallel
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
        for server in started:
            server.stop()
