"""Logs on stderr, each line with the request id of the request that caused it.

Two formats (EVSTORE_LOG_FORMAT): `json`, one object per line for log collectors (the
default), and `text`, one readable line for a developer's terminal. Access lines carry
method, route template, status and duration; event data and metadata are never logged
in either format (the formatters print only the message and the record's `fields`).

Exceptions are printed with their tracebacks, but the message of a database driver's
exception (and of any exception it caused or was caused by) is withheld: drivers put
statement parameters and failing rows, that is event data, into their messages.
"""

from __future__ import annotations

import contextvars
import json
import logging
import traceback
from datetime import UTC, datetime
from typing import Any

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
access = logging.getLogger("evstore.access")


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def _request_id(record: logging.LogRecord) -> str:
    return getattr(record, "request_id", None) or request_id.get()


# Modules whose exception messages may quote statement parameters or rows.
DRIVER_MODULES = ("sqlalchemy", "psycopg", "sqlite3", "aiosqlite", "asyncpg")
WITHHELD = "(message withheld: a database error may quote event data)"


def _from_driver(error: BaseException) -> bool:
    return type(error).__module__.split(".", 1)[0] in DRIVER_MODULES


def message(record: logging.LogRecord) -> str:
    """The record's message, with a driver exception among its arguments shown by its
    type alone (`log.warning("lost (%s)", error)` must not print a failing row)."""
    args = record.args
    if isinstance(args, tuple) and any(isinstance(a, BaseException) for a in args):
        record.args = tuple(
            f"{type(a).__name__}" if isinstance(a, BaseException) and _from_driver(a) else a
            for a in args
        )
    return record.getMessage()


def safe_traceback(exc_info: Any) -> str:
    """The traceback of `exc_info` (oldest exception of the chain first), with every
    message withheld when any exception of the chain comes from a database driver."""
    error = exc_info[1] if isinstance(exc_info, tuple) else exc_info
    chain: list[BaseException] = []
    while isinstance(error, BaseException) and error not in chain:
        chain.append(error)
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    redact = any(_from_driver(e) for e in chain)
    parts: list[str] = []
    for i, e in enumerate(reversed(chain)):
        if i:
            parts.append("\nThe above exception led to the following one:\n\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(e.__traceback__))
        kind = f"{type(e).__module__}.{type(e).__qualname__}"
        parts.append(f"{kind}: {WITHHELD if redact else e}\n")
    return "".join(parts).rstrip()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message(record),
            "request_id": _request_id(record),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["error"] = safe_traceback(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`time level logger [request id] message key=value...`; a field whose value the
    message already shows (an access line's method, route and status) is not repeated."""

    def format(self, record: logging.LogRecord) -> str:
        text = message(record)
        shown = set(text.split())
        extra = " ".join(
            f"{key}={value}"
            for key, value in getattr(record, "fields", {}).items()
            if str(value) not in shown
        )
        line = (
            f"{_time(record)} {record.levelname.lower():<7} {record.name} "
            f"[{_request_id(record)}] {text}"
        )
        if extra:
            line += " " + extra
        if record.exc_info:
            line += "\n" + safe_traceback(record.exc_info)
        return line


FORMATTERS: dict[str, type[logging.Formatter]] = {"json": JsonFormatter, "text": TextFormatter}


def log_config(level: str, log_format: str = "json") -> dict[str, Any]:
    """uvicorn's log_config: everything on stderr in `log_format`; uvicorn's own access
    log is replaced by ours (which knows the route template and the request id)."""
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "evstore",
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"evstore": {"()": FORMATTERS[log_format]}},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"level": level.upper()},
            "uvicorn.access": {"level": "WARNING", "propagate": False, "handlers": []},
            # Driver loggers print statement parameters (event data) below WARNING.
            "sqlalchemy": {"level": "WARNING"},
            "aiosqlite": {"level": "WARNING"},
            "psycopg": {"level": "WARNING"},
        },
    }
