"""The test harness itself: the PostgreSQL fixture waits for a server that is still
starting instead of skipping the PostgreSQL half of the suite."""

from __future__ import annotations

import asyncio
import threading

import psycopg
import pytest

from tests.conftest import ADMIN_URL, pg_url, wait_for_postgres
from tests.support.tcp_proxy import TcpProxy


@pytest.mark.postgres_only
async def test_the_first_connection_is_retried_until_postgresql_answers(backend: str) -> None:
    host_port = ADMIN_URL.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    proxy = TcpProxy(host, int(port))  # not listening yet: connections are refused
    url = pg_url("postgres").replace(host_port, f"127.0.0.1:{proxy.port}")
    refused = threading.Event()
    waiting = asyncio.create_task(asyncio.to_thread(wait_for_postgres, url, 30.0, refused))
    assert await asyncio.to_thread(refused.wait, 30.0)
    await proxy.start()  # the server "comes up"
    try:
        await asyncio.wait_for(waiting, 30.0)  # returns instead of raising
    finally:
        await proxy.cut()


@pytest.mark.postgres_only
async def test_a_server_that_never_comes_gives_its_error(backend: str) -> None:
    proxy = TcpProxy("127.0.0.1", 5432)  # never started
    url = f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres"
    with pytest.raises(psycopg.OperationalError):
        await asyncio.to_thread(wait_for_postgres, url, 1.0)
