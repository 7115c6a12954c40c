"""Logs on stderr, each line with the request id of the request that caused it.

Two formats (EVSTORE_LOG_FORMAT): `json`, one object per line for log collectors (the
default), and `text`, one readable line for a developer's terminal. Access lines carry
method, route template, status and duration; event data and metadata are never logged
in either format (the formatters print only the message and the record's `fields`).
"""

from __future__ import annotations

import contextvars
import json
import logging
from datetime import UTC, datetime
from typing import Any

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
access = logging.getLogger("evstore.access")


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def _request_id(record: logging.LogRecord) -> str:
    return getattr(record, "request_id", None) or request_id.get()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": _request_id(record),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`time level logger [request id] message key=value...`; a field whose value the
    message already shows (an access line's method, route and status) is not repeated."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        shown = set(message.split())
        extra = " ".join(
            f"{key}={value}"
            for key, value in getattr(record, "fields", {}).items()
            if str(value) not in shown
        )
        line = (
            f"{_time(record)} {record.levelname.lower():<7} {record.name} "
            f"[{_request_id(record)}] {message}"
        )
        if extra:
            line += " " + extra
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
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
