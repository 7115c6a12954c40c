"""The group-commit writer never dies: an unexpected error fails only its batch, a
database that refuses writes is a 503 for every request in flight (none hangs), a
stopped writer fails /health/ready and appends at once; and no failure puts event
data into the logs, at any level, in either log format."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from app.domain.types import ANY_VERSION, AppendResult
from app.settings import Settings
from app.store.bootstrap import open_store
from tests.support.factories import append_body, new_event
from tests.support.servers import running_servers

DEADLINE = 30.0


async def test_an_unexpected_error_fails_its_batch_and_the_writer_serves_on(
    settings: Settings,
) -> None:
    calls: list[int] = []

    def fails_once(size: int) -> None:  # a bug inside the writer, on its first batch
        calls.append(size)
        if len(calls) == 1:
            raise RuntimeError("a bug in the writer")

    async with open_store(settings, on_batch=fails_once) as store:
        with pytest.raises(RuntimeError):
            await asyncio.wait_for(store.events.append("W-1", [new_event()], ANY_VERSION), 5)
        assert store.writer.running
        after = await asyncio.wait_for(
            store.events.append("W-1", [new_event()], ANY_VERSION), DEADLINE
        )
        assert isinstance(after, AppendResult) and after.version == 1  # nothing half-written


async def test_a_stopped_writer_fails_readiness_and_appends_at_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    assert (await client.get("/health/ready")).status_code == 200
    await app.state.store.writer.stop()
    ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["writer"] == "stopped"
    answer = await asyncio.wait_for(client.post("/streams/W-1", json=append_body()), 5)
    assert answer.status_code == 503
    assert answer.json()["type"] == "/problems/unavailable"


def _set_read_only(database_url: str, on: bool) -> None:
    name = make_url(database_url).database
    admin = make_url(database_url).set(database="postgres").render_as_string(False)
    with psycopg.connect(admin, autocommit=True) as conn:
        value = "on" if on else "off"
        conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = {value}')
        # the service's pooled connections were opened before: end them
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )


@pytest.mark.postgres_only
async def test_a_read_only_database_is_503_for_every_append_in_flight_then_recovers(
    client: httpx.AsyncClient, database_url: str
) -> None:
    assert (await client.post("/streams/R-0", json=append_body())).status_code == 201
    body = append_body()  # 30 identical appends: the batch falls back to batches of one
    await asyncio.to_thread(_set_read_only, database_url, True)
    try:
        answers = await asyncio.wait_for(
            asyncio.gather(*(client.post("/streams/R-1", json=body) for _ in range(30))),
            DEADLINE,
        )
        assert {a.status_code for a in answers} == {503}, [a.text for a in answers[:3]]
        assert (await client.get("/health/ready")).status_code == 200  # reachable, writing
    finally:
        await asyncio.to_thread(_set_read_only, database_url, False)
    again = await asyncio.wait_for(client.post("/streams/R-1", json=body), DEADLINE)
    assert again.status_code in (201, 503)  # the first use of a severed pool slot may fail
    if again.status_code == 503:
        again = await asyncio.wait_for(client.post("/streams/R-1", json=body), DEADLINE)
    assert again.status_code == 201, again.text


def _end_service_connections(database_url: str) -> int:
    """End every connection the service holds to its database (as a restart would)."""
    name = make_url(database_url).database
    admin = make_url(database_url).set(database="postgres").render_as_string(False)
    with psycopg.connect(admin, autocommit=True) as conn:
        ended = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = 'evstore'",
            (name,),
        ).fetchone()
    return int(ended[0]) if ended else 0


@pytest.mark.postgres_only
async def test_the_writers_kept_connection_found_dead_is_replaced_without_a_failure(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """The writer keeps its connection between batches without the pool's ping: when
    the server ended it meanwhile, the next append still succeeds (nothing of it was
    sent before the connection was found dead), on a new connection."""
    for round_ in range(3):
        first = await client.post("/streams/K-1", json=append_body())
        assert first.status_code == 201, first.text
        assert await asyncio.to_thread(_end_service_connections, database_url) >= 1
        again = await asyncio.wait_for(client.post("/streams/K-1", json=append_body()), DEADLINE)
        assert again.status_code == 201, (round_, again.text)
    versions = [e["version"] for e in (await client.get("/streams/K-1")).json()["events"]]
    assert versions == list(range(1, 7))


SQLITE_TRIGGER = """
CREATE TRIGGER refuse_events BEFORE INSERT ON events
BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END
"""
PG_TRIGGER = [
    """
    CREATE FUNCTION refuse_events() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'refused %', NEW.data; END $$
    """,
    """CREATE TRIGGER refuse_events BEFORE INSERT ON events
       FOR EACH ROW EXECUTE FUNCTION refuse_events()""",
]


def _refuse_inserts(backend: str, database_url: str) -> None:
    if backend == "sqlite":
        import sqlite3

        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            conn.execute(SQLITE_TRIGGER)
        return
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in PG_TRIGGER:
            conn.execute(statement)  # type: ignore[call-overload]


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["json", "text"])
def test_no_failure_logs_event_data(
    backend: str, database_url: str, tmp_path: Path, log_format: str
) -> None:
    _refuse_inserts(backend, database_url)
    secret = f"ssn-{uuid.uuid4().hex}"
    body = {"events": [{"type": "Hired", "data": {"ssn": secret}, "metadata": {"m": secret}}]}
    with running_servers(database_url, tmp_path, log_level="debug", log_format=log_format) as (
        server,
    ):
        for _ in range(3):
            answer = httpx.post(f"{server.url}/streams/Staff-1", json=body, timeout=DEADLINE)
            assert answer.status_code == 500
            assert secret not in answer.text
        output = server.output()
    assert "append" in output.lower() or "error" in output.lower(), output[-2000:]
    assert secret not in output
