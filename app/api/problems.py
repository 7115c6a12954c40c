"""RFC 9457 problem details: the one registry of every problem the service sends.

`TABLE` maps each error type to its row (status, slug, title, extension members,
headers, and a fixed detail where the error's own text must not be shown). Domain
errors come from `app.domain.errors`; the conditions that only exist on the wire
(bad JSON, bad headers, wrong media type, routing, the HTTP server's own limits) are
defined here. `respond(request, error)` finds the row for any exception, for the
exception handlers and for the append fast path alike; the HTTP server protocol
(app/server.py) renders its 408 and 431 from the same rows with `render_bytes`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Match

from app.domain import errors as de
from app.domain.names import STREAM_ID_RULE

PROBLEM_JSON = "application/problem+json"


class ApiError(Exception):
    """Conditions of the HTTP layer itself."""


class MalformedJsonError(ApiError):
    """The body is not JSON, not UTF-8, or repeats a member name."""


class InvalidPreconditionError(ApiError):
    """If-Match / If-None-Match cannot be parsed, or combine in a way that means nothing."""


class UnsupportedMediaTypeError(ApiError):
    """The body is not sent as application/json (UTF-8)."""


class RouteNotFoundError(ApiError):
    """No route has this path."""


class MethodNotAllowedError(ApiError):
    """The path exists, but not with this method; `allowed` names those it has."""

    def __init__(self, method: str, allowed: list[str]) -> None:
        super().__init__(f"{method} is not allowed here; allowed: {', '.join(allowed)}")
        self.allowed = allowed


class RequestTimeoutError(ApiError):
    """The request's headers did not arrive in time (the HTTP server's deadline)."""


class HeadersTooLargeError(ApiError):
    """The request line and headers are larger than the HTTP server accepts."""


# A 422 lists at most this many problems (a body of a million NaNs has a million), and
# says how many it did not list in `errors_not_listed`.
MAX_LISTED = 100


class Problems(list[dict[str, str]]):
    """Problems found in a request, keeping the first MAX_LISTED and counting the rest,
    so that finding them costs bounded memory however many there are."""

    def __init__(self, items: Iterable[dict[str, str]] = ()) -> None:
        super().__init__()
        self.unlisted = 0
        self += items

    def append(self, item: dict[str, str]) -> None:
        if len(self) < MAX_LISTED:
            super().append(item)
        else:
            self.unlisted += 1

    def __iadd__(self, other: Iterable[dict[str, str]]) -> Problems:  # type: ignore[override,misc]
        for item in other:
            self.append(item)
        self.unlisted += getattr(other, "unlisted", 0)
        return self


class ValidationProblemError(ApiError):
    """422 with the problems found: `errors` holds {pointer|parameter, detail} items, at
    most MAX_LISTED of them; `unlisted` counts the others."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        listed = Problems(errors)
        first = listed[0] if listed else {"detail": "invalid request"}
        where = first.get("pointer") or first.get("parameter") or "the body"
        total = len(listed) + listed.unlisted
        more = f" (and {total - 1} more; see errors)" if total > 1 else ""
        super().__init__(f"{where}: {first['detail']}{more}")
        self.errors: list[dict[str, str]] = list(listed)
        self.unlisted = listed.unlisted


def _none(_: Any) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Kind:
    """One row: `detail`, when set, replaces the error's own text."""

    status: int
    slug: str
    title: str
    extensions: Callable[[Any], dict[str, Any]] = _none
    headers: Callable[[Any], dict[str, str]] = _none
    detail: str | None = None


INTERNAL = Kind(
    500, "internal-error", "Internal server error", detail="an unexpected error occurred"
)
UNAVAILABLE = Kind(
    503,
    "unavailable",
    "Service unavailable",
    detail="the database cannot be reached right now; retry later",
)
VALIDATION = Kind(
    422,
    "validation-error",
    "Validation error",
    lambda e: {"errors": e.errors, **({"errors_not_listed": e.unlisted} if e.unlisted else {})},
)

TABLE: dict[type[BaseException], Kind] = {
    MalformedJsonError: Kind(400, "malformed-json", "Malformed JSON"),
    # The client went away while sending its body; nobody reads this answer.
    ClientDisconnect: Kind(
        400, "malformed-json", "Malformed JSON", detail="the client disconnected"
    ),
    InvalidPreconditionError: Kind(400, "invalid-precondition", "Invalid precondition"),
    RouteNotFoundError: Kind(404, "not-found", "Not found", detail="no such resource"),
    de.StreamNotFoundError: Kind(
        404, "stream-not-found", "Stream not found", lambda e: {"stream_id": e.stream_id}
    ),
    de.EventNotFoundError: Kind(404, "event-not-found", "Event not found"),
    de.SnapshotNotFoundError: Kind(
        404, "snapshot-not-found", "Snapshot not found", lambda e: {"stream_id": e.stream_id}
    ),
    de.SubscriptionNotFoundError: Kind(
        404, "subscription-not-found", "Subscription not found", lambda e: {"name": e.name}
    ),
    de.TrackerNotFoundError: Kind(
        404, "tracker-not-found", "Tracker not found", lambda e: {"name": e.name}
    ),
    MethodNotAllowedError: Kind(
        405,
        "method-not-allowed",
        "Method not allowed",
        headers=lambda e: {"Allow": ", ".join(e.allowed)},
    ),
    RequestTimeoutError: Kind(408, "request-timeout", "Request timeout"),
    de.DuplicateEventIdError: Kind(
        409, "duplicate-event-id", "Duplicate event id", lambda e: {"event_ids": e.event_ids}
    ),
    de.AppendConditionFailedError: Kind(
        409,
        "append-condition-failed",
        "Append condition failed",
        lambda e: {
            "streams": [
                {"stream_id": s, "expected": expected, "current_version": current}
                for s, expected, current in e.streams
            ],
            **({"matched_position": e.matched_position} if e.matched_position else {}),
            **(
                {"tracker": {"name": e.tracker[0], "position": e.tracker[1]}}
                if e.tracker is not None
                else {}
            ),
        },
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
    de.CheckpointMovedError: Kind(
        412,
        "checkpoint-moved",
        "Checkpoint moved",
        lambda e: {"name": e.name, "expected": e.expected, "position": e.position},
        lambda e: {"ETag": f'"{e.position}"'},
    ),
    de.LimitExceededError: Kind(
        413, "payload-too-large", "Payload too large", lambda e: {"limit": e.limit, "max": e.max}
    ),
    UnsupportedMediaTypeError: Kind(415, "unsupported-media-type", "Unsupported media type"),
    de.OutOfRangeError: Kind(
        422,
        "validation-error",
        "Validation error",
        lambda e: {"errors": [{"pointer": e.pointer, "detail": e.detail}]},
    ),
    ValidationProblemError: VALIDATION,
    HeadersTooLargeError: Kind(431, "headers-too-large", "Request header fields too large"),
    de.StoreUnavailableError: UNAVAILABLE,
    de.SchemaOutOfDateError: UNAVAILABLE,
}


def kind_of(error: BaseException) -> Kind:
    """The row of the nearest class of `error` in the table; INTERNAL for the rest."""
    for cls in type(error).__mro__:
        kind = TABLE.get(cls)
        if kind is not None:
            return kind
    return INTERNAL


def problem_body(error: BaseException, kind: Kind) -> bytes:
    body = {
        "type": f"/problems/{kind.slug}",
        "title": kind.title,
        "status": kind.status,
        "detail": kind.detail if kind.detail is not None else str(error),
        **kind.extensions(error),
    }
    # ASCII with escapes: a pointer may name a member whose name is a lone surrogate,
    # which has no UTF-8 form but does have a JSON one.
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def render(error: BaseException, retry_after: int = 1) -> Response:
    """The problem response for `error`, by its row."""
    kind = kind_of(error)
    headers = kind.headers(error)
    if kind.status == 503:
        headers = {**headers, "Retry-After": str(retry_after)}
    return Response(problem_body(error, kind), kind.status, headers, media_type=PROBLEM_JSON)


def render_bytes(error: BaseException) -> bytes:
    """A whole HTTP/1.1 response closing the connection, for the HTTP server itself."""
    kind = kind_of(error)
    body = problem_body(error, kind)
    head = (
        f"HTTP/1.1 {kind.status} {HTTPStatus(kind.status).phrase}\r\n"
        f"content-type: {PROBLEM_JSON}\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


def on_the_wire(request: Request, error: BaseException) -> BaseException:
    """Starlette's and FastAPI's own exceptions as the errors of the table."""
    if isinstance(error, RequestValidationError):
        return ValidationProblemError(validation_errors(error))
    if isinstance(error, StarletteHTTPException):
        if error.status_code == 404:
            return RouteNotFoundError()
        if error.status_code == 405:
            return MethodNotAllowedError(request.method, allowed_methods(request))
    return error


async def respond(request: Request, error: BaseException) -> Response:
    """The answer to any exception a request raised: its row of the table, or a 500
    that reveals nothing. An unexpected error is logged once, by the server, which
    receives it after this answer (Starlette's ServerErrorMiddleware re-raises it, and
    so does the append fast path); the log formats withhold driver messages."""
    error = on_the_wire(request, error)
    settings = getattr(request.app.state, "settings", None)
    return render(error, getattr(settings, "retry_after_seconds", 1))


def allowed_methods(request: Request) -> list[str]:
    # Starlette names only the first route that matched the path; probe every method.
    return sorted(
        method
        for method in ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.routes
        )
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


PARAMETER_DETAILS = {"stream_id": STREAM_ID_RULE}


def install(app: FastAPI) -> None:
    """Answer every exception with `respond`: the table's errors, FastAPI's 422,
    Starlette's 404/405, client disconnects, and the catch-all 500."""
    for cls in (*TABLE, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(cls, respond)
