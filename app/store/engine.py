"""Engines for both backends.

SQLite: WAL, synchronous=FULL (an acknowledged append survives power loss), a busy
timeout for other processes, and our own BEGIN so that writers take the write lock up
front (BEGIN IMMEDIATE) instead of failing to upgrade a read lock halfway through.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.settings import Settings

BEGIN_MODE = "evstore_begin"
log = logging.getLogger("evstore.store")  # execution option: "IMMEDIATE" for SQLite writers


def _driver(url: str, sqlite_driver: str) -> sa.URL:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return parsed.set(drivername=sqlite_driver)
    shown = parsed.render_as_string(hide_password=True)
    raise ValueError(f"unsupported database URL {shown}: use sqlite:/// or postgresql://")


def sync_url(url: str) -> sa.URL:
    """The URL with a synchronous driver (psycopg, pysqlite), for migrations and tools."""
    return _driver(url, "sqlite+pysqlite")


def async_url(url: str) -> sa.URL:
    """The URL with the async driver the service uses (psycopg async, aiosqlite)."""
    return _driver(url, "sqlite+aiosqlite")


def create_engine(settings: Settings) -> AsyncEngine:
    url = async_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, settings)
    engine = create_async_engine(
        url,
        hide_parameters=True,  # error messages must never quote event data
        pool_size=settings.pool_size,
        max_overflow=settings.pool_max_overflow,
        pool_timeout=settings.pool_timeout_seconds,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args=pg_connect_args(settings),
    )
    _bound_pre_ping(engine, settings.connect_timeout_seconds)
    return engine


def pg_connect_args(settings: Settings) -> dict[str, Any]:
    """psycopg's connection arguments for every connection of the service's pool and
    its writer: a connect timeout, the statement timeout, UTC, and a name."""
    timeout_ms = int(settings.statement_timeout_seconds * 1000)
    return {
        "connect_timeout": max(1, round(settings.connect_timeout_seconds)),
        "options": f"-c statement_timeout={timeout_ms} -c timezone=UTC",
        "application_name": "evstore",
    }


def pg_conninfo(database_url: str) -> str:
    """The URL as libpq takes it (psycopg connections outside the pool)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


def _bound_pre_ping(engine: AsyncEngine, seconds: float) -> None:
    """The pool's pre-ping waits on the network like any statement, so a connection
    whose path has stalled would hang the checkout; sever it if the ping takes longer
    than `seconds`, and the pool discards it as disconnected."""
    dialect = engine.dialect
    ping = dialect.do_ping

    def bounded_ping(dbapi_connection: Any) -> bool:
        loop = asyncio.get_running_loop()
        driver = getattr(dbapi_connection, "driver_connection", None)
        timer = loop.call_later(seconds, sever_driver, driver)
        try:
            return bool(ping(dbapi_connection))
        finally:
            timer.cancel()

    dialect.do_ping = bounded_ping  # type: ignore[method-assign]


def sever_driver(driver: Any) -> None:
    """Shut down the socket under a psycopg connection, so that whatever waits on it
    fails at once as a disconnect (closing the descriptor under a waiting reader would
    not wake it)."""
    try:
        fd = driver.pgconn.socket if driver is not None else -1
        if fd >= 0:
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
    except Exception:  # already closed: nothing waits on it then
        log.debug("could not sever a connection", exc_info=True)


def operation_deadline(settings: Settings) -> float:
    """How long one use of a connection may take in all: a connect, then statements
    that the server cuts at statement_timeout, and a margin."""
    return settings.connect_timeout_seconds + settings.statement_timeout_seconds + 1.0


def _sqlite_engine(url: sa.URL, settings: Settings) -> AsyncEngine:
    engine = create_async_engine(
        url,
        hide_parameters=True,  # error messages must never quote event data
        pool_size=settings.pool_size,
        max_overflow=settings.pool_max_overflow,
        pool_timeout=settings.pool_timeout_seconds,
        connect_args={"timeout": settings.statement_timeout_seconds},
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={int(settings.statement_timeout_seconds * 1000)}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get(BEGIN_MODE, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine
