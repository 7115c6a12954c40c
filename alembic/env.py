"""Alembic environment: runs migrations with the sync driver of the configured backend."""

from __future__ import annotations

from logging.config import fileConfig

import sqlalchemy as sa

from alembic import context
from app.store.engine import sync_url

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


def run_migrations_online() -> None:
    engine = sa.create_engine(sync_url(database_url()), poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        is_pg = connection.dialect.name == "postgresql"
        if is_pg:
            connection.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            connection.commit()
        try:
            context.configure(connection=connection, target_metadata=None)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            if is_pg:
                connection.execute(
                    sa.text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY}
                )
                connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `evstore migrate`")
run_migrations_online()
