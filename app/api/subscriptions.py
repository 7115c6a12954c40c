"""Durable subscriptions: server-side checkpoints over the global log.

Consumption reuses the global log's page reader and the live tail: a subscription is
only a stored filter and a position.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Header, Path, Query, Request
from starlette.responses import Response

from app.api import preconditions as pre
from app.api.body import parse_json, read_body, require_json
from app.api.deps import (
    BroadcasterDep,
    MetricsDep,
    SettingsDep,
    StoreDep,
    SubscriptionStoreDep,
    page_size,
)
from app.api.models import LogPageOut, SubscriptionListOut, SubscriptionOut
from app.api.pages import Wait, log_page_response, read_page
from app.api.params import IfMatch, Limit
from app.api.problems import ValidationProblemError
from app.api.query_body import parse_query, query_json
from app.api.render import NO_CACHE, json_response
from app.api.responses import problems
from app.api.sse import SSE_RESPONSE, LiveResponse, live_response, start_position
from app.domain.names import (
    MAX_NAME_LENGTH,
    MAX_POSITION,
    MAX_TAGS,
    NAME_PATTERN,
    is_name,
    is_tag,
    is_type,
)
from app.domain.types import LogFilter, Subscription
from app.live.wire import dumps, timestamp

router = APIRouter(tags=["subscriptions"])

Name = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        pattern=NAME_PATTERN,
        description="1 to 200 characters from A-Z a-z 0-9 - _ . : @ ~ =",
        examples=["billing"],
    ),
]


def _body(schema: str) -> dict[str, Any]:
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    return {"requestBody": {"required": True, "content": content}}


def filter_body(where: LogFilter) -> dict[str, Any]:
    """A stored filter as GET shows it: a query of several items as {"query": ...},
    any other as its four lists."""
    if where.any_of:
        return {"query": query_json(where)}
    return {
        "stream": list(where.streams),
        "category": list(where.categories),
        "type": list(where.types),
        "tag": list(where.tags),
    }


def subscription_body(s: Subscription, head: int) -> dict[str, Any]:
    return {
        "name": s.name,
        "filter": filter_body(s.filter),
        "position": s.position,
        "head": head,
        "lag": max(0, head - s.position),
        "updated_at": timestamp(s.updated_at),
    }


def parse_subscription(raw: bytes, max_name: int) -> tuple[LogFilter, int | str]:
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise ValidationProblemError([{"pointer": "", "detail": "the body must be an object"}])
    found = [
        {"pointer": f"/{k}", "detail": "unknown member"}
        for k in body
        if k not in ("stream", "category", "type", "tag", "query", "start")
    ]
    lists: dict[str, tuple[str, ...]] = {}
    for member, valid, most in (
        ("stream", is_name, 100),
        ("category", is_name, 100),
        ("type", is_type, 100),
        ("tag", lambda text, _: is_tag(text), MAX_TAGS),
    ):
        values = body.get(member, [])
        if not isinstance(values, list) or len(values) > most:
            found.append({"pointer": f"/{member}", "detail": f"must be a list of at most {most}"})
            continue
        for i, value in enumerate(values):
            if not isinstance(value, str) or not valid(value, max_name):
                found.append({"pointer": f"/{member}/{i}", "detail": f"not a valid {member}"})
        lists[member] = tuple(dict.fromkeys(v for v in values if isinstance(v, str)))
    where = LogFilter()
    if "query" in body:
        for member in ("stream", "category", "type", "tag"):
            if member in body:
                detail = "a filter has the four lists or a query, not both"
                found.append({"pointer": f"/{member}", "detail": detail})
        where, problems_found = parse_query(body["query"], "/query", max_name)
        found.extend(problems_found)
    start = body.get("start", "beginning")
    valid_position = type(start) is int and 0 <= start <= MAX_POSITION
    if start not in ("beginning", "end") and not valid_position:
        found.append({"pointer": "/start", "detail": 'must be "beginning", "end" or a position'})
    if found:
        raise ValidationProblemError(found)
    if "query" not in body:
        where = LogFilter(lists["stream"], lists["category"], lists["type"], lists["tag"])
    return where, start


def parse_checkpoint(raw: bytes) -> int:
    """The position of a checkpoint body (CheckpointIn)."""
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise ValidationProblemError([{"pointer": "", "detail": "the body must be an object"}])
    found = [{"pointer": f"/{k}", "detail": "unknown member"} for k in body if k != "position"]
    position = body.get("position")
    if type(position) is not int or not 0 <= position <= MAX_POSITION:
        found.append({"pointer": "/position", "detail": "required: a position >= 0"})
    if found:
        raise ValidationProblemError(found)
    assert isinstance(position, int)
    return position


@router.put(
    "/subscriptions/{name}",
    operation_id="createSubscription",
    status_code=201,
    response_model=SubscriptionOut,
    responses={
        200: {
            "description": "It already exists with this filter: returned unchanged",
            "model": SubscriptionOut,
        },
        **problems(400, 409, 415),
    },
    openapi_extra=_body("SubscriptionIn"),
)
async def create_subscription(
    request: Request,
    name: Name,
    subscriptions: SubscriptionStoreDep,
    store: StoreDep,
    settings: SettingsDep,
) -> Response:
    """Create a durable subscription, or return the same one unchanged."""
    require_json(request)
    raw = await read_body(request, settings.max_body_bytes)
    where, start = parse_subscription(raw, settings.max_name_length)
    found, created = await subscriptions.create(name, where, start)
    body = subscription_body(found, await store.head())
    headers = {"ETag": pre.etag(found.position), "Location": f"/subscriptions/{quote(name)}"}
    return json_response(dumps(body), 201 if created else 200, headers)


@router.get(
    "/subscriptions/{name}",
    operation_id="getSubscription",
    response_model=SubscriptionOut,
    responses=problems(404),
)
async def get_subscription(
    name: Name, subscriptions: SubscriptionStoreDep, store: StoreDep
) -> Response:
    """A subscription with its checkpoint, the head and the lag."""
    found = await subscriptions.get(name)
    body = subscription_body(found, await store.head())
    headers = {"ETag": pre.etag(found.position), "Cache-Control": NO_CACHE}
    return json_response(dumps(body), headers=headers)


@router.get(
    "/subscriptions",
    operation_id="listSubscriptions",
    response_model=SubscriptionListOut,
    responses=problems(),
)
async def list_subscriptions(
    subscriptions: SubscriptionStoreDep,
    store: StoreDep,
    settings: SettingsDep,
    after: Annotated[
        str | None,
        Query(
            max_length=MAX_NAME_LENGTH,
            pattern=NAME_PATTERN,
            description="cursor: the last name seen",
        ),
    ] = None,
    limit: Limit = 100,
) -> Response:
    """List subscriptions in name order."""
    limit = page_size(limit, settings)
    found = await subscriptions.list(after, limit)
    head = await store.head()
    next_url = None
    if len(found) == limit:
        next_url = "/subscriptions?" + urlencode({"after": found[-1].name, "limit": limit})
    body = {"subscriptions": [subscription_body(s, head) for s in found], "next": next_url}
    return json_response(
        dumps(body), headers={"Link": f'<{next_url}>; rel="next"'} if next_url else None
    )


@router.delete(
    "/subscriptions/{name}",
    operation_id="deleteSubscription",
    status_code=204,
    response_class=Response,
    responses=problems(),
)
async def delete_subscription(name: Name, subscriptions: SubscriptionStoreDep) -> Response:
    """Delete a subscription (204 whether or not it existed)."""
    await subscriptions.delete(name)
    return Response(status_code=204)


@router.put(
    "/subscriptions/{name}/checkpoint",
    operation_id="storeCheckpoint",
    response_model=SubscriptionOut,
    responses=problems(400, 404, 412, 415),
    openapi_extra=_body("CheckpointIn"),
)
async def store_checkpoint(
    request: Request,
    name: Name,
    subscriptions: SubscriptionStoreDep,
    store: StoreDep,
    settings: SettingsDep,
    if_match: IfMatch = None,
) -> Response:
    """Store the position processed; If-Match makes it conditional on the old one."""
    require_json(request)
    expected: frozenset[int] | None = None
    if if_match is not None:
        tags = pre.parse_tags(if_match, "If-Match")
        if tags is not None:
            expected = frozenset(
                v for t in tags if not t.weak and (v := pre.tag_version(t, "If-Match")) is not None
            )
    position = parse_checkpoint(await read_body(request, settings.max_body_bytes))
    stored = await subscriptions.checkpoint(name, position, expected, if_match or "")
    result = subscription_body(stored, await store.head())
    return json_response(dumps(result), headers={"ETag": pre.etag(stored.position)})


@router.get(
    "/subscriptions/{name}/events",
    operation_id="readSubscriptionEvents",
    response_model=LogPageOut,
    responses=problems(404),
)
async def read_subscription_events(
    name: Name,
    subscriptions: SubscriptionStoreDep,
    broadcaster: BroadcasterDep,
    settings: SettingsDep,
    limit: Limit = 100,
    wait: Wait = 0,
) -> Response:
    """The next page of matching events after the subscription's checkpoint."""
    limit = page_size(limit, settings)
    found = await subscriptions.get(name)
    page = await read_page(broadcaster, found.position, limit, found.filter, wait)
    next_url = f"/subscriptions/{quote(name)}/events?" + urlencode({"limit": limit})
    return log_page_response(broadcaster, page, next_url, NO_CACHE)


@router.get(
    "/subscriptions/{name}/live",
    operation_id="subscribeSubscriptionLive",
    response_class=LiveResponse,
    responses={**SSE_RESPONSE, **problems(404)},
)
async def subscribe_subscription_live(
    name: Name,
    subscriptions: SubscriptionStoreDep,
    broadcaster: BroadcasterDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", description="resume after this position instead"),
    ] = None,
) -> LiveResponse:
    """Follow the subscription's events live from its checkpoint (at least once)."""
    found = await subscriptions.get(name)
    start = start_position(last_event_id, found.position)
    assert start is not None
    return live_response(broadcaster, settings, metrics, start, found.filter)
