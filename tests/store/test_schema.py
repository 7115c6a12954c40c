"""Migrations: the schema comes from Alembic, and an old schema is refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

import app
from app.domain.errors import SchemaOutOfDateError
from app.main import create_app
from app.settings import Settings
from app.store.engine import sync_url
from app.store.migrations import check_schema, script_location, upgrade
from tests.conftest import create_pg_database, drop_pg_database, pg_url


def test_upgrade_is_idempotent_and_creates_every_table(database_url: str) -> None:
    upgrade(database_url)  # already at head: a no-op
    check_schema(database_url)
    engine = sa.create_engine(sync_url(database_url))
    try:
        names = set(sa.inspect(engine).get_table_names())
        with engine.connect() as conn:
            head = conn.execute(sa.text("SELECT id, position FROM log_head")).all()
    finally:
        engine.dispose()
    assert {"streams", "events", "log_head", "snapshots", "subscriptions"} <= names
    assert [tuple(r) for r in head] == [(1, 0)]


@pytest.fixture
def empty_database_url(backend: str, request: pytest.FixtureRequest, tmp_path: object) -> object:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/empty.db"
        return
    request.getfixturevalue("pg_template")  # skips when PostgreSQL is unreachable
    name = create_pg_database()
    try:
        yield pg_url(name)
    finally:
        drop_pg_database(name)


async def test_service_refuses_an_unmigrated_database(empty_database_url: str) -> None:
    with pytest.raises(SchemaOutOfDateError, match="evstore migrate"):
        check_schema(empty_database_url)
    app = create_app(Settings(database_url=empty_database_url, migrate_on_start=False))
    with pytest.raises(SchemaOutOfDateError):
        async with app.router.lifespan_context(app):
            pass
    assert not sqlite_file_exists(empty_database_url)  # checking does not create it


def sqlite_file_exists(database_url: str) -> bool:
    url = make_url(database_url)
    return url.get_backend_name() == "sqlite" and Path(url.database or "").is_file()


def test_migrations_are_found_through_the_package_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert (script_location() / "env.py").is_file()
    assert script_location() == Path(app.__file__).parent.parent / "alembic"  # source tree


async def test_service_migrates_on_start_by_default(empty_database_url: str) -> None:
    app = create_app(Settings(database_url=empty_database_url))
    async with app.router.lifespan_context(app):
        check_schema(empty_database_url)


@pytest.mark.postgres_only
def test_upgrade_leaves_the_planner_statistics(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    engine = sa.create_engine(sync_url(empty_database_url))
    try:
        with engine.connect() as conn:
            analysed = conn.execute(
                sa.text(
                    "SELECT relname FROM pg_stat_user_tables "
                    "WHERE last_analyze IS NOT NULL ORDER BY relname"
                )
            ).scalars()
            found = set(analysed)
    finally:
        engine.dispose()
    assert {"events", "streams", "log_head"} <= found
