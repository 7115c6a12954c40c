"""Hot read statements run on the driver connection underneath SQLAlchemy.

SQLAlchemy builds and compiles the statement (once per dialect for the fixed shapes);
the driver (psycopg or aiosqlite) runs it and hands back plain tuples: no `Row`
objects and no result processors, which cost more than the query itself on a page of
a thousand events. The connection is still the pooled SQLAlchemy connection, so
`EventStore.connect` keeps its deadline, and its rollback on return ends the read.
Only plain int and str parameters go through here: nothing is converted on the way in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

Rows = list[tuple[Any, ...]]

_compiled: dict[tuple[str, str], SQLCompiler] = {}


def _compile(dialect: Dialect, stmt: ClauseElement) -> SQLCompiler:
    compiled = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    return cast(SQLCompiler, compiled)


async def fetch(
    conn: AsyncConnection,
    stmt: ClauseElement,
    params: Mapping[str, Any],
    shape: str | None = None,
) -> Rows:
    """All rows of `stmt` as tuples. `shape` names a statement whose SQL never changes
    (only its parameters do), so it is compiled once per dialect; without it the
    statement is compiled on every call (filters with a varying number of values)."""
    dialect = conn.dialect
    if shape is None:
        compiled = _compile(dialect, stmt)
    else:
        key = (dialect.name, shape)
        found = _compiled.get(key)
        if found is None:
            found = _compiled[key] = _compile(dialect, stmt)
        compiled = found
    values = compiled.construct_params(dict(params)) or {}
    if compiled.positional:
        return await run(conn, compiled.string, [values[n] for n in compiled.positiontup or ()])
    return await run(conn, compiled.string, values)


async def run(conn: AsyncConnection, sql: str, args: Any) -> Rows:
    """Run driver SQL; driver errors come out as SQLAlchemy's, as if SQLAlchemy had
    run it (a lost connection is invalidated, so the pool drops it)."""
    fairy = await conn.get_raw_connection()
    driver: Any = fairy.driver_connection
    dialect = conn.dialect
    dbapi = dialect.loaded_dbapi
    try:
        cursor = await driver.execute(sql, args)
        try:
            rows: Rows = list(await cursor.fetchall())
        finally:
            await cursor.close()
    except dbapi.Error as e:
        lost = dialect.is_disconnect(e, fairy.dbapi_connection, None)
        if lost:
            await conn.invalidate(e)
        raise exc.DBAPIError.instance(
            sql,
            args,
            e,
            dbapi.Error,
            connection_invalidated=lost,
            dialect=dialect,
        ) from e
    return rows
