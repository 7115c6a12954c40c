"""Alembic environment: runs migrations with the sync driver of the configured backend.

Several processes may start on one new database at once (two `evstore serve`, a
deployment's replicas), so migrations are serialised. PostgreSQL: a session advisory
lock. SQLite: the whole upgrade, from reading alembic_version to the last DDL, is one
BEGIN IMMEDIATE transaction (migration_engine in app/store/migrations.py), so the
second process waits on the write lock (busy timeout) and then finds the schema at head.
Not an fcntl lock on the database file: closing any descriptor of that file drops all
of SQLite's POSIX locks in the process. Not a lock on a sibling file either: it would be
left behind next to the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from logging.config import fileConfig

import sqlalchemy as sa

from alembic import context
from app.store.migrations import migration_engine

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# A fixed key: concurrent starters of the service on one PostgreSQL migrate one at a time.
MIGRATION_LOCK_KEY = 0x65767374  # "evst"


def database_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from app.settings import Settings

    return Settings().database_url


@contextmanager
def postgres_lock(connection: sa.Connection) -> Iterator[None]:
    if connection.dialect.name != "postgresql":
        yield
        return
    connection.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
    connection.commit()
    try:
        yield
    finally:
        connection.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
        connection.commit()


def run_migrations_online() -> None:
    engine = migration_engine(database_url())
    try:
        # One transaction begun here, after the lock: Alembic runs inside it (for
        # SQLite, the BEGIN IMMEDIATE above) and it commits when the block ends.
        with (
            engine.connect() as connection,
            postgres_lock(connection),
            connection.begin(),
        ):
            context.configure(connection=connection, target_metadata=None)
            context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `evstore migrate`")
run_migrations_online()
