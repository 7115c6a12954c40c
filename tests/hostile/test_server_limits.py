"""Limits of the HTTP server, against `evstore serve` (app/cli.py's uvicorn
configuration with app/server.py's protocol): an oversized header block is a 431, headers
that never finish are a 408, and a client that sends its headers slowly does not keep
others waiting.

These limits do not depend on the database: the tests run on SQLite only.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import READY_SECONDS, ROOT, Server, wait_ready
from tests.support.tcp_proxy import free_port

MAX_HEADER_BYTES = 8192
# A safety net for reads that wait for the server to answer or close: never reached
# when the server behaves, it turns a hang into a failure.
SOCKET_TIMEOUT = 30.0

sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@contextlib.contextmanager
def serving(database_url: str, log: Path, **settings: object) -> Iterator[Server]:
    """`evstore serve` on a free port, ready; SIGTERM on the way out."""
    port = free_port()
    env = {
        **os.environ,
        "EVSTORE_DATABASE_URL": database_url,
        "EVSTORE_MIGRATE_ON_START": "false",
        "EVSTORE_LOG_LEVEL": "warning",
        "EVSTORE_HOST": "127.0.0.1",
        "EVSTORE_PORT": str(port),
        **{f"EVSTORE_{name.upper()}": str(value) for name, value in settings.items()},
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve"], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_ready(server, time.monotonic() + READY_SECONDS)
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    with serving(
        database_url, tmp_path / "server.log", max_header_bytes=MAX_HEADER_BYTES
    ) as started:
        yield started


def connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=SOCKET_TIMEOUT)
    return conn


def read_until_closed(conn: socket.socket) -> bytes:
    received = b""
    while chunk := conn.recv(65536):
        received += chunk
    return received


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def problem_of(raw: bytes, status: int, slug: str) -> dict[str, Any]:
    got, headers, body = parse(raw)
    assert got == status, raw[:300]
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    document: dict[str, Any] = json.loads(body)
    assert document["type"] == f"/problems/{slug}"
    assert document["status"] == status
    return document


@sqlite_only
def test_a_header_block_within_the_limit_is_served(server: Server) -> None:
    headers = {f"X-Filler-{i}": "f" * 100 for i in range((MAX_HEADER_BYTES - 1024) // 120)}
    response = httpx.get(server.url + "/health", headers=headers)
    assert response.status_code == 200


@sqlite_only
def test_an_oversized_header_block_is_a_431(server: Server) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: evstore\r\nX-Big: " + b"a" * MAX_HEADER_BYTES
    with connect(server) as conn:
        conn.sendall(request)  # no blank line: the server must not wait for one
        document = problem_of(read_until_closed(conn), 431, "headers-too-large")
    assert str(MAX_HEADER_BYTES) in document["detail"]
    assert httpx.get(server.url + "/health").status_code == 200


@sqlite_only
def test_many_small_headers_are_counted_together(server: Server) -> None:
    lines = b"".join(b"X-H-%d: v\r\n" % i for i in range(MAX_HEADER_BYTES // 10))
    with connect(server) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: evstore\r\n" + lines)
        problem_of(read_until_closed(conn), 431, "headers-too-large")


@sqlite_only
def test_a_huge_header_ends_the_connection_and_the_server_lives_on(server: Server) -> None:
    """64 MiB of one header: the server stops reading at the limit and closes (the 431
    may be lost to the reset of the unread rest); it neither buffers it all nor dies."""
    chunk = b"a" * 65536
    with connect(server) as conn, contextlib.suppress(ConnectionError):
        conn.sendall(b"POST /streams/a HTTP/1.1\r\nHost: evstore\r\nX-Big: ")
        for _ in range(1024):
            conn.sendall(chunk)
    assert server.process.poll() is None
    assert httpx.get(server.url + "/health").status_code == 200
    assert "refused a request" in server.output()


@sqlite_only
def test_a_slow_client_does_not_keep_others_waiting(server: Server) -> None:
    with connect(server) as slow:
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: evstore\r\nX-Slow: a")
        # The slow client holds an open request; others are served meanwhile.
        with httpx.Client(base_url=server.url) as others:
            for _ in range(3):
                assert others.get("/health").status_code == 200
                assert (
                    others.post(
                        "/streams/fast", json={"events": [{"type": "A", "data": 1}]}
                    ).status_code
                    == 201
                )
        slow.sendall(b"bc\r\nConnection: close\r\n\r\n")
        status, _, body = parse(read_until_closed(slow))
    assert status == 200
    assert json.loads(body)["head"] == 3


@sqlite_only
def test_headers_that_never_finish_are_a_408(database_url: str, tmp_path: Path) -> None:
    with serving(database_url, tmp_path / "server.log", header_timeout_seconds=0.5) as server:
        with connect(server) as conn:
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: evstore\r\nX-Slow: a")
            problem_of(read_until_closed(conn), 408, "request-timeout")
        with connect(server) as idle:  # a connection that never sends a byte
            problem_of(read_until_closed(idle), 408, "request-timeout")
        assert httpx.get(server.url + "/health").status_code == 200


@sqlite_only
def test_a_body_that_never_finishes_is_a_408(database_url: str, tmp_path: Path) -> None:
    with serving(database_url, tmp_path / "server.log", body_timeout_seconds=0.5) as server:
        with connect(server) as conn:
            conn.sendall(
                b"POST /streams/Slow-1 HTTP/1.1\r\nHost: evstore\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                b'{"events":[{"type":"A",'
            )
            problem_of(read_until_closed(conn), 408, "request-timeout")
        # a body that arrives in pieces within the deadline is served
        with connect(server) as conn:
            body = b'{"events":[{"type":"A","data":1}]}'
            conn.sendall(
                b"POST /streams/Slow-2 HTTP/1.1\r\nHost: evstore\r\nConnection: close\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            )
            conn.sendall(body[:10])
            conn.sendall(body[10:])
            status, _, _ = parse(read_until_closed(conn))
        assert status == 201
        assert httpx.get(server.url + "/streams/Slow-1").status_code == 404  # nothing written


@sqlite_only
def test_connections_beyond_the_limit_get_a_503_problem(database_url: str, tmp_path: Path) -> None:
    with serving(database_url, tmp_path / "server.log", max_concurrent_connections=2) as server:
        # two connections held open (the server counts them), then a third request
        with connect(server), connect(server), connect(server) as third:
            third.sendall(b"GET /health HTTP/1.1\r\nHost: evstore\r\n\r\n")
            status, headers, body = parse(read_until_closed(third))
        assert status == 503
        assert headers["content-type"] == "application/problem+json"
        assert headers["retry-after"] == "1"
        problem = json.loads(body)
        assert (problem["type"], problem["status"]) == ("/problems/unavailable", 503)
        assert httpx.get(server.url + "/health").status_code == 200  # below the limit again


@sqlite_only
def test_a_client_that_stops_reading_a_big_page_is_dropped(
    database_url: str, tmp_path: Path
) -> None:
    """A response above 256 KiB goes out in chunks, each within send_timeout_seconds:
    a client that reads nothing is dropped having been sent a chunk or two, not the
    whole page (which the server would otherwise hold for as long as it stays). The
    page is bigger than the 4 MB the kernel may buffer for the socket."""
    settings = {"send_timeout_seconds": 0.5, "max_page_bytes": 32 << 20}
    with serving(database_url, tmp_path / "server.log", **settings) as server:
        big = {"events": [{"type": "Big", "data": {"pad": "x" * 900_000}} for _ in range(3)]}
        for _ in range(5):
            response = httpx.post(server.url + "/streams/Big-1", json=big, timeout=30)
            assert response.status_code == 201
        whole = len(httpx.get(server.url + "/streams/Big-1", timeout=30).content)
        host, port = server.url.removeprefix("http://").split(":")
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.settimeout(SOCKET_TIMEOUT)
        with stalled:
            stalled.connect((host, int(port)))
            stalled.sendall(b"GET /streams/Big-1 HTTP/1.1\r\nHost: evstore\r\n\r\n")
            deadline = time.monotonic() + SOCKET_TIMEOUT
            # the server's log is the other process's state: poll it
            while "dropped a client that read nothing" not in server.output():
                assert time.monotonic() < deadline, server.output()[-2000:]
                time.sleep(0.05)
            received = read_until_closed(stalled)  # what was buffered, then the close
        assert received.startswith(b"HTTP/1.1 200 ")
        assert whole > 13_000_000 and len(received) < whole // 2, (len(received), whole)
        assert httpx.get(server.url + "/health").status_code == 200
