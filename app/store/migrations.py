"""Schema migrations: Alembic's upgrade and the schema check, for the service, the
command line and the tests.

The migrations are found through the `app` package, never through the working
directory: an installed wheel carries them as app/migrations/ (pyproject.toml maps the
repository's alembic/ folder there); a source checkout (the editable install, the
tests, `alembic` run from the repository root) has them in alembic/ next to app/.
"""

from __future__ import annotations

import contextlib
import importlib.resources
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import exc
from sqlalchemy.engine import make_url

from alembic import command
from app.domain.errors import SchemaOutOfDateError, StoreUnavailableError
from app.store.engine import sync_url
from app.store.failures import translate

# A migrator waits this long for another one to finish (SQLite's write lock), and this
# long for PostgreSQL to accept the connection.
BUSY_SECONDS = 60.0
CONNECT_SECONDS = 10


def migration_engine(database_url: str) -> sa.Engine:
    """A sync engine for migrating and checking the schema. On SQLite every
    transaction is BEGIN IMMEDIATE: alembic/env.py runs the whole upgrade in one, so
    concurrent migrators take turns (see its docstring)."""
    url = sync_url(database_url)
    if url.get_backend_name() != "sqlite":
        connect = {"connect_timeout": CONNECT_SECONDS}
        return sa.create_engine(
            url, poolclass=sa.pool.NullPool, connect_args=connect, hide_parameters=True
        )
    engine = sa.create_engine(
        url, poolclass=sa.pool.NullPool, connect_args={"timeout": BUSY_SECONDS}
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # else pysqlite begins DEFERRED itself

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def script_location() -> Path:
    """The folder holding env.py and versions/: installed, or in the source tree."""
    package = Path(str(importlib.resources.files("app")))
    for folder in (package / "migrations", package.parent / "alembic"):
        if (folder / "env.py").is_file() and (folder / "versions").is_dir():
            return folder
    raise FileNotFoundError(f"no migrations in {package}/migrations or next to {package}")


def alembic_config(database_url: str) -> Config:
    """Config for the migrations that ship with this version of the package."""
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def display_url(database_url: str) -> str:
    """The URL as it may be shown: the password masked."""
    return make_url(database_url).render_as_string(hide_password=True)


@contextlib.contextmanager
def _explained(database_url: str) -> Iterator[None]:
    """Turn a connection failure into StoreUnavailableError whose message is one line
    naming the database (password masked) and the driver's reason."""
    try:
        yield
    except exc.DBAPIError as e:
        if not isinstance(translate(e), StoreUnavailableError):
            raise
        reason = next((line for line in str(e.orig).splitlines() if line.strip()), "")
        password = make_url(database_url).password
        if password:
            reason = reason.replace(str(password), "***")
        raise StoreUnavailableError(
            f"cannot use the database {display_url(database_url)}: {reason.strip()}"
        ) from e


def _sqlite_file(database_url: str) -> Path | None:
    """The file of a SQLite URL, or None (another backend, memory, a file: URI)."""
    url = make_url(database_url)
    name = url.database
    if url.get_backend_name() != "sqlite" or not name or name == ":memory:":
        return None
    if name.startswith("file:"):
        return None
    return Path(name).expanduser()


def upgrade(database_url: str) -> None:
    """Bring the schema to the newest revision (safe to run from several processes:
    alembic/env.py serialises them)."""
    file = _sqlite_file(database_url)
    if file is not None:
        file.resolve().parent.mkdir(parents=True, exist_ok=True)
    with _explained(database_url):
        command.upgrade(alembic_config(database_url), "head")
        analyze(database_url)


# PostgreSQL's ANALYZE samples a bounded number of rows, so it is cheap however large
# the tables; SQLite's PRAGMA optimize analyses only what its planner lacks.
ANALYZE = {
    "postgresql": "ANALYZE streams, events, log_head",
    "sqlite": "PRAGMA optimize",
}


def analyze(database_url: str) -> None:
    """Give the planner statistics: a migrated or bulk-loaded table without them can
    make filtered reads choose a scan (seen at 0.5 to 1.1 s over 100 streams)."""
    engine = migration_engine(database_url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(ANALYZE[conn.dialect.name])
            conn.commit()
    finally:
        engine.dispose()


def check_schema(database_url: str) -> None:
    """Raise SchemaOutOfDateError unless the database is at the newest revision. A
    missing SQLite file is not created (connecting would create it): it is a database
    at no revision, and the error's cause is FileNotFoundError."""
    config = alembic_config(database_url)
    required = ScriptDirectory.from_config(config).get_current_head() or ""
    file = _sqlite_file(database_url)
    if file is not None and not file.exists():
        raise SchemaOutOfDateError(None, required) from FileNotFoundError(str(file))
    engine = migration_engine(database_url)
    try:
        with _explained(database_url), engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    if current != required:
        raise SchemaOutOfDateError(current, required)
