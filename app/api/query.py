"""`POST /events/query` (contract section 11): the events a query selects, as a page of
the global log, with the same long polling."""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api.body import parse_json, read_body, require_json
from app.api.deps import BroadcasterDep, SettingsDep, page_size
from app.api.models import QueryPageOut
from app.api.pages import log_page_response, read_page
from app.api.problems import ValidationProblemError
from app.api.query_body import parse_query
from app.api.render import NO_CACHE
from app.api.responses import problems
from app.domain.names import MAX_POSITION
from app.domain.types import LogFilter

router = APIRouter(tags=["log"])

MAX_WAIT_SECONDS = 60
QUERY_MEMBERS = ("query", "after", "limit", "wait")


def parse_query_request(raw: bytes, max_name: int) -> tuple[LogFilter, int, int, float]:
    """The query, after, limit and wait of a query body (EventsQueryIn)."""
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise ValidationProblemError([{"pointer": "", "detail": "the body must be an object"}])
    found: list[dict[str, str]] = [
        {"pointer": f"/{k}", "detail": "unknown member"} for k in body if k not in QUERY_MEMBERS
    ]
    if "query" in body:
        where, problems_found = parse_query(body["query"], "/query", max_name)
        found.extend(problems_found)
    else:
        where = LogFilter()
        found.append({"pointer": "/query", "detail": 'required: {"items": [...]}'})
    after = body.get("after", 0)
    if type(after) is not int or not 0 <= after <= MAX_POSITION:
        found.append({"pointer": "/after", "detail": "must be a position: 0 to 2^63-1"})
    limit = body.get("limit", 100)
    if type(limit) is not int or not 1 <= limit <= 1000:
        found.append({"pointer": "/limit", "detail": "must be an integer from 1 to 1000"})
    wait: Any = body.get("wait", 0)
    if type(wait) not in (int, float) or not (math.isfinite(wait) and 0 <= wait <= 60):
        found.append({"pointer": "/wait", "detail": "must be a number of seconds, 0 to 60"})
    if found:
        raise ValidationProblemError(found)
    return where, after, limit, float(wait)


@router.post(
    "/events/query",
    operation_id="queryEvents",
    response_model=QueryPageOut,
    responses=problems(400, 413, 415),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/EventsQueryIn"}}
            },
        }
    },
)
async def query_events(
    request: Request, broadcaster: BroadcasterDep, settings: SettingsDep
) -> Response:
    """The events a query selects (an event matches when it matches any item), after a
    position, in position order; `wait` long-polls while nothing matches."""
    require_json(request)
    raw = await read_body(request, settings.max_body_bytes)
    where, after, limit, wait = parse_query_request(raw, settings.max_name_length)
    page = await read_page(broadcaster, after, page_size(limit, settings), where, wait)
    return log_page_response(broadcaster, page, None, NO_CACHE)
