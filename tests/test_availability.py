"""A database that cannot be reached gives 503 problems; the service recovers alone."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.engine import make_url

from app.main import create_app
from app.settings import Settings
from tests.support.factories import append_body, event_body
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres_only


@pytest.fixture
async def proxied(
    database_url: str,
) -> AsyncIterator[tuple[TcpProxy, httpx.AsyncClient]]:
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    settings = Settings(
        database_url=url.set(host="127.0.0.1", port=proxy.port).render_as_string(False),
        migrate_on_start=False,
        connect_timeout_seconds=2,
        pool_timeout_seconds=2,
        retry_after_seconds=3,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://evstore") as client:
            yield proxy, client
    await proxy.cut()


async def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "3"
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["type"], body["status"], body["title"]) == (
        "/problems/unavailable",
        503,
        "Service unavailable",
    )
    assert "psycopg" not in body["detail"] and "Error" not in body["detail"]


async def test_unreachable_database_is_503_and_service_recovers(
    proxied: tuple[TcpProxy, httpx.AsyncClient],
) -> None:
    proxy, client = proxied
    first = event_body()
    assert (await client.post("/streams/Order-1", json=append_body(first))).status_code == 201

    await proxy.cut()
    lost = event_body()
    await assert_unavailable(await client.post("/streams/Order-1", json=append_body(lost)))
    await assert_unavailable(await client.get("/streams/Order-1"))
    await assert_unavailable(await client.get("/events"))
    health = await client.get("/health")
    assert (health.status_code, health.json()["status"]) == (503, "unavailable")

    await proxy.start()  # the database is back: the very next requests succeed
    retried = await client.post("/streams/Order-1", json=append_body(lost))
    assert retried.status_code == 201, retried.text
    log = (await client.get("/events")).json()
    assert [e["id"] for e in log["events"]] == [first["id"], lost["id"]]
    assert [e["position"] for e in log["events"]] == [1, 2]
    assert (await client.get("/health")).json()["status"] == "ok"
