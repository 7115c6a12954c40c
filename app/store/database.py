"""The database handle every part of the store shares: the engine, and how a
connection is used (a deadline on PostgreSQL, the write lock on SQLite, driver
errors translated)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.store import queries
from app.store.engine import BEGIN_MODE, sever_driver
from app.store.failures import translated


class Database:
    """One engine; create one per process."""

    def __init__(self, engine: AsyncEngine, deadline: float | None = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # Bound on one use of a connection (checkout and statements); PostgreSQL only.
        self.deadline = deadline if self.dialect == "postgresql" else None
        # SQLite has one writer per file; queueing here is cheaper than busy-waiting.
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None

    @contextlib.asynccontextmanager
    async def connect(self, write: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection from the pool, with driver errors translated (app.store.failures);
        `write` makes SQLite transactions take the write lock up front (BEGIN IMMEDIATE).

        On PostgreSQL the whole use is bounded by `deadline`: statement_timeout is
        enforced by the server, which never sees a query sent into a stalled
        connection. At the deadline the connection's socket is shut down, so whatever
        waits on it (a statement, or the rollback SQLAlchemy shields on the way out)
        fails at once as a disconnect, and the caller gets StoreUnavailableError."""
        timer: asyncio.TimerHandle | None = None
        with translated():
            async with asyncio.timeout(self.deadline):  # the checkout and its pre-ping
                conn = await self.engine.connect().start()
            if self.deadline is not None:
                timer = asyncio.get_running_loop().call_later(self.deadline, sever, conn)
            try:
                if write and self.dialect == "sqlite":
                    conn = await conn.execution_options(**{BEGIN_MODE: "IMMEDIATE"})
                yield conn
            finally:
                if timer is not None:
                    timer.cancel()
                await conn.close()

    @contextlib.asynccontextmanager
    async def write_lock(self) -> AsyncIterator[None]:
        """Held around every SQLite write transaction of this process."""
        if self._write_lock is None:
            yield
        else:
            async with self._write_lock:
                yield

    async def head(self) -> int:
        """The highest committed position (0 on an empty store)."""
        async with self.connect() as conn:
            return await queries.head(conn)

    def pool_checked_out(self) -> int:
        """Connections of the pool in use right now."""
        checked_out = getattr(self.engine.pool, "checkedout", None)
        return int(checked_out()) if callable(checked_out) else 0

    async def dispose(self) -> None:
        await self.engine.dispose()


def sever(conn: AsyncConnection) -> None:
    """Shut down the socket under a PostgreSQL connection that outlived its deadline."""
    fairy = conn.sync_connection.connection if conn.sync_connection else None
    sever_driver(getattr(fairy, "driver_connection", None) if fairy is not None else None)
