"""Schema migrations: Alembic's upgrade and the schema check, for the service, the
command line and the tests."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from alembic import command
from app.domain.errors import SchemaOutOfDateError
from app.store.engine import sync_url
from app.store.failures import translated


def alembic_config(database_url: str) -> Config:
    """Config for the repository's alembic/ folder (next to app/, or in the cwd)."""
    here = Path(__file__).resolve().parents[2]
    for root in (here, Path.cwd()):
        if (root / "alembic" / "env.py").is_file():
            break
    else:
        raise FileNotFoundError("alembic/ migrations folder not found next to app/ or in cwd")
    config = Config()
    config.set_main_option("script_location", str(root / "alembic"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def upgrade(database_url: str) -> None:
    """Bring the schema to the newest revision (safe to run from several processes)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        Path(url.database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), "head")


def check_schema(database_url: str) -> None:
    """Raise SchemaOutOfDateError unless the database is at the newest revision."""
    config = alembic_config(database_url)
    required = ScriptDirectory.from_config(config).get_current_head() or ""
    engine = sa.create_engine(sync_url(database_url), poolclass=sa.pool.NullPool)
    try:
        with translated(), engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    if current != required:
        raise SchemaOutOfDateError(current, required)
