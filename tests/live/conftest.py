"""Real uvicorn servers for live tests: the in-process transport buffers whole
responses, so endless streams are tested against processes on free ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.tcp_proxy import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_server(database_url: str, log: Path, **settings: object) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "EVSTORE_DATABASE_URL": database_url,
        "EVSTORE_MIGRATE_ON_START": "false",
        "EVSTORE_LOG_LEVEL": "warning",
        **{f"EVSTORE_{k.upper()}": str(v) for k, v in settings.items()},
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "app.main:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--timeout-graceful-shutdown",
        "5",
        "--log-level",
        "warning",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()}")
        try:
            if httpx.get(server.url + "/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.05)  # waiting for the process to listen, not synchronising a test
    server.stop()
    raise AssertionError(f"server did not become healthy: {log.read_text()}")


ServerFactory = Callable[..., Server]


@pytest.fixture
def servers(database_url: str, tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers on the test's database: `servers(live_poll_seconds=0.5)`."""
    started: list[Server] = []

    def start(**settings: object) -> Server:
        server = start_server(database_url, tmp_path / f"server-{len(started)}.log", **settings)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
