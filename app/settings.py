"""Service settings, read from EVSTORE_* environment variables. No module-level instance."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

MiB = 1024 * 1024
BACKENDS = ("sqlite", "postgresql", "postgres")

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


class Settings(BaseSettings):
    # hide_input_in_errors: a bad database URL may carry a password.
    model_config = SettingsConfigDict(
        env_prefix="EVSTORE_", extra="ignore", hide_input_in_errors=True
    )

    database_url: str = Field(
        "sqlite:///./evstore.db",
        description="sqlite:///path or postgresql://user@host:port/db",
    )
    host: str = Field("127.0.0.1", min_length=1, description="address to listen on")
    port: int = Field(8000, ge=1, le=65535, description="port to listen on")
    workers: int = Field(1, ge=1, description="worker processes")
    log_level: Annotated[LogLevel, BeforeValidator(_lower)] = Field(
        "info", description="critical, error, warning, info, debug or trace"
    )
    log_format: Annotated[Literal["json", "text"], BeforeValidator(_lower)] = Field(
        "json", description="json: one object per line; text: one readable line"
    )
    migrate_on_start: bool = Field(
        True, description="run `alembic upgrade head` before serving; else refuse an old schema"
    )

    max_body_bytes: int = Field(4 * MiB, ge=1024)
    max_event_bytes: int = Field(1 * MiB, ge=64, description="one event's data + metadata")
    max_events_per_append: int = Field(1000, ge=1)
    max_json_depth: int = Field(64, ge=2)
    max_name_length: int = Field(200, ge=1, le=200)
    max_page_size: int = Field(1000, ge=1)
    max_page_bytes: int = Field(
        4 * MiB,
        ge=1024,
        description="data and metadata in one page of events: a page ends early past it",
    )
    metrics_max_subscriptions: int = Field(
        100,
        ge=0,
        description="subscriptions with a lag series in /metrics: those furthest behind",
    )
    max_batch_bytes: int = Field(
        32 * MiB,
        ge=1024,
        description="data and metadata the group-commit writer puts in one transaction",
    )

    send_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="drop a client that reads nothing of a response (above 256 KiB) this long",
    )
    live_keepalive_seconds: float = Field(
        15.0, gt=0, description="silence before a `: ping` comment on live streams"
    )
    live_send_timeout_seconds: float = Field(
        30.0, gt=0, description="disconnect an SSE client that stops reading this long"
    )
    live_poll_seconds: float = Field(
        2.0, gt=0, description="fallback poll of the head, covering lost wake-ups"
    )
    live_checkpoint_seconds: float = Field(
        5.0, ge=0, description="least interval between checkpoint events"
    )
    live_cache_events: int = Field(2048, ge=0, description="newest events kept for subscribers")
    live_cache_bytes: int = Field(
        64 * MiB,
        ge=0,
        description="bound on the data those events (and their rendered messages) hold",
    )
    live_page_size: int = Field(500, ge=1, description="events per database read when tailing")
    live_retry_ms: int = Field(2000, ge=0, description="the SSE retry: field")

    pool_size: int = Field(10, ge=1)
    pool_max_overflow: int = Field(10, ge=0)
    pool_timeout_seconds: float = Field(5.0, gt=0)
    connect_timeout_seconds: float = Field(5.0, gt=0)
    statement_timeout_seconds: float = Field(30.0, gt=0)
    retry_after_seconds: int = Field(1, ge=1, description="Retry-After sent with a 503")

    # The HTTP server (`evstore serve`): see app/server.py and the README's "Limits of
    # the HTTP server".
    max_header_bytes: int = Field(
        32 * 1024, ge=1024, description="request line and headers; more is a 431"
    )
    header_timeout_seconds: float = Field(
        10.0, gt=0, description="a request's headers must arrive within this, else 408"
    )
    body_timeout_seconds: float = Field(
        60.0, gt=0, description="a request's body must arrive within this after its headers"
    )
    keep_alive_seconds: int = Field(5, ge=1, description="idle keep-alive connections close")
    max_concurrent_connections: int | None = Field(
        None,
        ge=1,
        description="beyond this many connections or requests: 503; default: what the "
        "file-descriptor limit leaves after the pool and a reserve",
    )

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        # The messages never repeat the URL: it may carry a password.
        try:
            url = make_url(value)
        except (ArgumentError, ValueError):
            raise ValueError(
                "not a database URL: use sqlite:///path or postgresql://user@host:port/db"
            ) from None
        backend = url.get_backend_name()
        if backend not in BACKENDS:
            raise ValueError(
                f"unsupported database {backend!r}: use sqlite:///path or "
                "postgresql://user@host:port/db"
            )
        return value
