"""OpenAPI response declarations shared by the routers."""

from __future__ import annotations

from typing import Any

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

DESCRIPTIONS = {
    304: "Not modified: the stream is still at the version in If-None-Match",
    400: "Malformed JSON or an invalid precondition header",
    404: "Not found",
    409: "Conflict: event ids already used elsewhere",
    412: "Precondition failed: the stream is not at the expected version",
    413: "Payload too large: a size limit was broken",
    415: "Unsupported media type: send application/json",
    422: "Validation error: every problem, with JSON pointers or parameter names",
    500: "Internal error (reveals no internals)",
    503: "The database cannot be reached; retry after Retry-After seconds",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Problem responses under application/problem+json (422 and 503 always)."""
    declared: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, 422, 500, 503}):
        declared[status] = {
            "description": DESCRIPTIONS[status],
            "content": {"application/problem+json": {"schema": PROBLEM_REF}},
        }
    return declared
