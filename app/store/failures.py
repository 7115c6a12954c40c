"""Driver failures as domain errors: the one table in `store/` that reads them.

Every use of a connection goes through `translated()` (`Database.connect` wraps its
body in it), so no SQLAlchemy, psycopg or sqlite3 exception leaves the store:

- the database cannot be reached, timed out, was cut, or refuses writes (a read-only
  transaction, a disk that is full or read-only): `StoreUnavailableError` (503);
- a unique constraint of the events table: `EventIdTakenError` or
  `VersionTakenError`, which the writer decides (a replay, a 409, or a retry) and
  which never reach the API;
- anything else is a bug, and passes unchanged (the API answers 500).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import exc

from app.domain.errors import StoreUnavailableError


class EventIdTakenError(Exception):
    """An insert met events_event_id_key: an id of the append is stored already."""


class VersionTakenError(Exception):
    """An insert met events_stream_id_version_key, the backstop behind the stream row
    lock: another transaction took the version; deciding again reads it anew."""


# The unique constraints the writer decides, by name; SQLite names columns instead.
UNIQUE: dict[str, type[Exception]] = {
    "events_event_id_key": EventIdTakenError,
    "events_stream_id_version_key": VersionTakenError,
}
SQLITE_UNIQUE = {
    "UNIQUE constraint failed: events.event_id": "events_event_id_key",
    "UNIQUE constraint failed: events.stream_id, events.version": "events_stream_id_version_key",
}
# SQLSTATE classes of PostgreSQL's operational errors that mean "not now": connection
# exceptions, a deadlock or serialization failure (retry), insufficient resources,
# operator intervention (a statement timeout, a shutdown), system errors.
UNAVAILABLE_CLASSES = {"08", "40", "53", "57", "58"}
# sqlite3's messages for a file that cannot be used right now (locked, full, gone).
SQLITE_UNAVAILABLE = (
    "database is locked",
    "database table is locked",
    "unable to open database file",
    "disk I/O error",
    "database or disk is full",
    "attempt to write a readonly database",
)
# SQLSTATEs of a server that is there but will not take this work now.
UNAVAILABLE_SQLSTATES = {
    "25006": "the database is read-only",  # read_only_sql_transaction
    "53100": "the database server's disk is full",  # disk_full
    "57P01": "the database server is shutting down",  # admin_shutdown
    "57P03": "the database server is starting up",  # cannot_connect_now
}


def violated_constraint(error: exc.IntegrityError) -> str | None:
    """The name of the unique constraint an insert broke, on either backend."""
    diag = getattr(error.orig, "diag", None)
    if diag is not None:  # psycopg
        return getattr(diag, "constraint_name", None)
    return SQLITE_UNIQUE.get(str(error.orig))


def translate(error: BaseException) -> Exception | None:
    """The error `error` stands for, or None when it is none we know (a bug)."""
    if isinstance(error, exc.IntegrityError):
        taken = UNIQUE.get(violated_constraint(error) or "")
        return taken(str(error.orig)) if taken is not None else None
    if isinstance(error, exc.DBAPIError):
        sqlstate = getattr(error.orig, "sqlstate", None)
        if sqlstate in UNAVAILABLE_SQLSTATES:
            return StoreUnavailableError(UNAVAILABLE_SQLSTATES[sqlstate])
        if error.connection_invalidated or isinstance(error, exc.InterfaceError):
            return StoreUnavailableError(type(error).__name__)
        if isinstance(error, exc.OperationalError):
            if type(error.orig).__module__ != "sqlite3":
                # A connection failure has no SQLSTATE; of the server's operational
                # errors only these classes mean "not now" (a program limit, 54, is a
                # request the server will never take: not a 503).
                if sqlstate is None or sqlstate[:2] in UNAVAILABLE_CLASSES:
                    return StoreUnavailableError(type(error).__name__)
                return None
            # sqlite3 raises OperationalError for a bad statement too: only these mean
            # the file cannot be used right now.
            message = str(error.orig)
            if any(message.startswith(m) for m in SQLITE_UNAVAILABLE):
                return StoreUnavailableError(message)
        return None
    if isinstance(error, exc.TimeoutError | TimeoutError):
        return StoreUnavailableError("the database did not answer in time")
    if isinstance(error, OSError):  # ConnectionError among them
        return StoreUnavailableError(type(error).__name__)
    return None


def connection_lost(error: BaseException) -> bool:
    """Whether a translated error came from a connection found dead (its pool entry
    was invalidated): nothing sent on it can have been committed before it broke."""
    cause = error.__cause__
    return isinstance(cause, exc.DBAPIError) and bool(cause.connection_invalidated)


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Raise what driver failures inside the block stand for (see `translate`)."""
    try:
        yield
    except (exc.SQLAlchemyError, OSError, TimeoutError) as e:
        found = translate(e)
        if found is None:
            raise
        raise found from e
