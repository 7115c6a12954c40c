"""Fixtures: every test gets a fresh database on each backend, built by Alembic.

Alembic migrates one template per backend per session; each test then gets a copy
(PostgreSQL: CREATE DATABASE ... TEMPLATE; SQLite: a file copy), dropped afterwards.
On PostgreSQL a copy takes about 0.4 s (most of it waiting on the WAL), so the next
copy is made, and the last one dropped, in a background thread while a test runs.
Set EVSTORE_REQUIRE_POSTGRES=1 (CI does) to fail instead of skip when PostgreSQL is
not reachable at EVSTORE_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import collections
import os
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings
from app.store.bootstrap import Store, open_store
from app.store.event_store import EventStore
from app.store.migrations import upgrade

ADMIN_URL = os.environ.get(
    "EVSTORE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ["sqlite", "postgresql"]


def pg_url(database: str) -> str:
    base = ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{database}"


def pg_admin(sql: str, url: str = ADMIN_URL) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)  # type: ignore[arg-type,unused-ignore]


def create_pg_database(template: str | None = None) -> str:
    name = f"evstore_test_{uuid.uuid4().hex[:12]}"
    pg_admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name


def drop_pg_database(name: str) -> None:
    pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# PostgreSQL may still be starting (a CI machine, a restarted service): the first
# connection is retried for this long before the PostgreSQL half is skipped or failed.
PG_START_SECONDS = 15.0


def wait_for_postgres(
    url: str = ADMIN_URL,
    seconds: float = PG_START_SECONDS,
    refused: threading.Event | None = None,
) -> None:
    """Return once PostgreSQL at `url` answers; raise its error after `seconds`.
    `refused` is set at the first refusal (for the test of this retry)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            pg_admin("SELECT 1", url)
            return
        except psycopg.OperationalError:
            if refused is not None:
                refused.set()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)  # polling a server that is not up yet; bounded by the deadline


class Copies:
    """Copies of a template database made ahead, and dropped, by background threads:
    `take` hands over a copy made while earlier tests ran."""

    AHEAD = 2

    def __init__(self, template: str) -> None:
        self.template = template
        self.worker = ThreadPoolExecutor(self.AHEAD, thread_name_prefix="pg-copies")
        self.ahead: collections.deque[Future[str]] = collections.deque()

    def take(self) -> str:
        while len(self.ahead) <= self.AHEAD:
            self.ahead.append(self.worker.submit(create_pg_database, self.template))
        return self.ahead.popleft().result()

    def give_back(self, name: str) -> None:
        self.worker.submit(drop_pg_database, name)

    def close(self) -> None:
        while self.ahead:
            self.give_back(self.ahead.popleft().result())
        self.worker.shutdown(wait=True)


@pytest.fixture(scope="session")
def pg_copies(pg_template: str) -> Iterator[Copies]:
    copies = Copies(pg_template)
    try:
        yield copies
    finally:
        copies.close()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    try:
        wait_for_postgres()
    except psycopg.OperationalError as e:
        message = f"PostgreSQL not reachable at {ADMIN_URL} for {PG_START_SECONDS:g} s: {e}"
        if os.environ.get("EVSTORE_REQUIRE_POSTGRES"):
            pytest.fail(message)
        pytest.skip(message)
    name = create_pg_database()
    try:
        upgrade(pg_url(name))
        yield name
    finally:
        drop_pg_database(name)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say loudly when PostgreSQL tests were skipped: the suite then proves half."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "postgresql" in r.nodeid]
    if skipped:
        terminalreporter.write_sep(
            "!",
            f"{len(skipped)} PostgreSQL TESTS WERE SKIPPED: only SQLite was tested "
            "(set EVSTORE_REQUIRE_POSTGRES=1 to make this a failure)",
            red=True,
            bold=True,
        )


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "evstore.db"
    upgrade(f"sqlite:///{path}")
    return path


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that use a database run once per backend; `@pytest.mark.postgres_only`
    (tests of network links, several processes, PostgreSQL locking) on PostgreSQL."""
    explicit = any(
        "backend" in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize")
    )
    if "backend" in metafunc.fixturenames and not explicit:
        only_pg = metafunc.definition.get_closest_marker("postgres_only") is not None
        metafunc.parametrize("backend", ["postgresql"] if only_pg else BACKENDS, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database for this test on the given backend."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "evstore.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    copies: Copies = request.getfixturevalue("pg_copies")
    name = copies.take()
    try:
        yield pg_url(name)
    finally:
        copies.give_back(name)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, migrate_on_start=False)


@pytest.fixture
async def opened(settings: Settings) -> AsyncIterator[Store]:
    """The store as the service opens it (app.store.bootstrap), running for the test."""
    async with open_store(settings) as parts:
        yield parts


@pytest.fixture
def store(opened: Store) -> EventStore:
    """The event store; appends go through the group-commit writer."""
    return opened.events


@pytest.fixture
def fast_append() -> bool:
    """Whether appends take the front's fast path (a module may run both ways)."""
    return True


@pytest.fixture
async def app(settings: Settings, fast_append: bool) -> AsyncIterator[FastAPI]:
    application = create_app(settings, fast_append=fast_append)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://evstore") as c:
        yield c
