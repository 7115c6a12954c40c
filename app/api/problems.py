"""RFC 9457 problem details: the one table from error type to status and slug.

Domain errors come from `app.domain.errors`; the few conditions that only exist on the
wire (bad JSON, bad headers, wrong media type, 422 lists) are defined here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from app.domain import errors as de

PROBLEM_JSON = "application/problem+json"


class ApiError(Exception):
    """Conditions of the HTTP layer itself."""


class MalformedJsonError(ApiError):
    pass


class InvalidPreconditionError(ApiError):
    pass


class UnsupportedMediaTypeError(ApiError):
    pass


class ValidationProblemError(ApiError):
    """422 with every problem found: `errors` holds {pointer|parameter, detail} items."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        first = errors[0] if errors else {"detail": "invalid request"}
        where = first.get("pointer") or first.get("parameter") or "the body"
        more = f" (and {len(errors) - 1} more; see errors)" if len(errors) > 1 else ""
        super().__init__(f"{where}: {first['detail']}{more}")
        self.errors = errors


@dataclass(frozen=True)
class Kind:
    status: int
    slug: str
    title: str
    extensions: Callable[[Any], dict[str, Any]] = lambda e: {}
    headers: Callable[[Any], dict[str, str]] = lambda e: {}


TABLE: dict[type[Exception], Kind] = {
    MalformedJsonError: Kind(400, "malformed-json", "Malformed JSON"),
    InvalidPreconditionError: Kind(400, "invalid-precondition", "Invalid precondition"),
    de.StreamNotFoundError: Kind(
        404, "stream-not-found", "Stream not found", lambda e: {"stream_id": e.stream_id}
    ),
    de.EventNotFoundError: Kind(404, "event-not-found", "Event not found"),
    de.DuplicateEventIdError: Kind(
        409, "duplicate-event-id", "Duplicate event id", lambda e: {"event_ids": e.event_ids}
    ),
    de.WrongExpectedVersionError: Kind(
        412,
        "wrong-expected-version",
        "Wrong expected version",
        lambda e: {
            "stream_id": e.stream_id,
            "expected": e.expected,
            "current_version": e.current_version,
        },
        lambda e: {"ETag": f'"{e.current_version}"'} if e.current_version > 0 else {},
    ),
    de.LimitExceededError: Kind(
        413, "payload-too-large", "Payload too large", lambda e: {"limit": e.limit, "max": e.max}
    ),
    de.SnapshotNotFoundError: Kind(
        404, "snapshot-not-found", "Snapshot not found", lambda e: {"stream_id": e.stream_id}
    ),
    de.SubscriptionNotFoundError: Kind(
        404, "subscription-not-found", "Subscription not found", lambda e: {"name": e.name}
    ),
    de.StaleSnapshotError: Kind(
        409,
        "stale-snapshot",
        "Stale snapshot",
        lambda e: {"stream_id": e.stream_id, "stored_version": e.stored_version},
    ),
    de.SubscriptionConflictError: Kind(
        409, "subscription-conflict", "Subscription conflict", lambda e: {"name": e.name}
    ),
    de.CheckpointMovedError: Kind(
        412,
        "checkpoint-moved",
        "Checkpoint moved",
        lambda e: {"name": e.name, "expected": e.expected, "position": e.position},
        lambda e: {"ETag": f'"{e.position}"'},
    ),
    de.OutOfRangeError: Kind(
        422,
        "validation-error",
        "Validation error",
        lambda e: {"errors": [{"pointer": e.pointer, "detail": e.detail}]},
    ),
    UnsupportedMediaTypeError: Kind(415, "unsupported-media-type", "Unsupported media type"),
    ValidationProblemError: Kind(
        422, "validation-error", "Validation error", lambda e: {"errors": e.errors}
    ),
}

UNAVAILABLE = Kind(503, "unavailable", "Service unavailable")
INTERNAL = Kind(500, "internal-error", "Internal server error")
BY_STATUS: dict[int, tuple[str, str]] = {
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("payload-too-large", "Payload too large"),
}


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> Response:
    body = {"type": f"/problems/{slug}", "title": title, "status": status, "detail": detail}
    body.update(extensions)
    # ASCII with escapes: a pointer may name a member whose name is a lone surrogate,
    # which has no UTF-8 form but does have a JSON one.
    content = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    return Response(content, status, headers=headers, media_type=PROBLEM_JSON)


def render(error: Exception, kind: Kind, detail: str | None = None) -> Response:
    return problem(
        kind.status,
        kind.slug,
        kind.title,
        detail if detail is not None else str(error),
        kind.headers(error),
        **kind.extensions(error),
    )


def unavailable_response(retry_after: int) -> Response:
    return problem(
        503,
        UNAVAILABLE.slug,
        UNAVAILABLE.title,
        "the database cannot be reached right now; retry later",
        {"Retry-After": str(retry_after)},
    )


def validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    """FastAPI's parameter errors as {parameter, detail} (or {pointer, detail})."""
    found: list[dict[str, str]] = []
    for item in exc.errors():
        loc = [str(part) for part in item.get("loc", ())]
        detail = PARAMETER_DETAILS.get(loc[-1] if loc else "") or str(item.get("msg", ""))
        if loc and loc[0] in ("query", "path", "header", "cookie"):
            found.append({"parameter": loc[-1], "detail": detail})
        else:
            found.append({"pointer": "/" + "/".join(loc[1:]), "detail": detail})
    return found


PARAMETER_DETAILS = {
    "stream_id": "must be 1 to 200 characters from A-Z a-z 0-9 - _ . : @ ~ =, "
    "starting with a letter or digit",
}


def install(app: FastAPI, retry_after: int) -> None:
    """Register the handlers: domain and API errors, FastAPI's 422, Starlette's
    404/405, and the catch-all 500 (which reveals nothing of the failure)."""

    async def on_known(_: Request, error: Exception) -> Response:
        for cls in type(error).__mro__:
            if cls in TABLE:
                return render(error, TABLE[cls])
        return await on_unexpected(_, error)

    async def on_unavailable(_: Request, error: Exception) -> Response:
        return unavailable_response(retry_after)

    async def on_request_validation(_: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        errors = validation_errors(error)
        return render(ValidationProblemError(errors), TABLE[ValidationProblemError])

    async def on_http(_: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        slug, title = BY_STATUS.get(error.status_code, ("http-error", "HTTP error"))
        detail = {
            404: "no such resource",
            405: "method not allowed on this resource",
        }.get(error.status_code, str(error.detail))
        return problem(error.status_code, slug, title, detail, dict(error.headers or {}))

    async def on_disconnect(_: Request, error: Exception) -> Response:
        # The client went away while sending its body; nobody reads this answer.
        return problem(400, "malformed-json", "Malformed JSON", "the client disconnected")

    async def on_unexpected(_: Request, error: Exception) -> Response:
        return render(error, INTERNAL, "an unexpected error occurred")

    for cls in TABLE:
        app.add_exception_handler(cls, on_known)
    app.add_exception_handler(de.StoreUnavailableError, on_unavailable)
    app.add_exception_handler(de.SchemaOutOfDateError, on_unavailable)
    app.add_exception_handler(RequestValidationError, on_request_validation)
    app.add_exception_handler(ClientDisconnect, on_disconnect)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
