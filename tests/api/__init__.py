"""HTTP contract tests (contract sections 1-4, 9, 10), run against the in-process app
on both backends. Shared helpers live here: sending appends, reading the head, and
asserting whole problem bodies."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import httpx

from app.main import create_app
from app.settings import Settings
from tests.support.factories import append_body, event_body

PROBLEM_JSON = "application/problem+json"
JSON = {"Content-Type": "application/json"}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")

# One fixed title per slug (contract section 1).
TITLES = {
    "malformed-json": "Malformed JSON",
    "invalid-precondition": "Invalid precondition",
    "stream-not-found": "Stream not found",
    "event-not-found": "Event not found",
    "not-found": "Not found",
    "method-not-allowed": "Method not allowed",
    "duplicate-event-id": "Duplicate event id",
    "append-condition-failed": "Append condition failed",
    "tracker-not-found": "Tracker not found",
    "wrong-expected-version": "Wrong expected version",
    "payload-too-large": "Payload too large",
    "unsupported-media-type": "Unsupported media type",
    "validation-error": "Validation error",
    "internal-error": "Internal server error",
}


def assert_problem(
    response: httpx.Response, status: int, slug: str, **extensions: Any
) -> dict[str, Any]:
    """The whole problem body: type, title, status, a non-empty detail and exactly the
    given extension members. Returns the body for further checks."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    detail = body.pop("detail", None)
    assert isinstance(detail, str), body
    assert detail.strip()
    assert body == {
        "type": f"/problems/{slug}",
        "title": TITLES[slug],
        "status": status,
        **extensions,
    }
    return {**body, "detail": detail}


def assert_validation(response: httpx.Response, *where: tuple[str, str]) -> list[dict[str, str]]:
    """A 422 whose `errors` name exactly these places, in any order: each item is
    ("pointer", "/events/0/type") or ("parameter", "limit"), with a non-empty detail."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert set(body) == {"type", "title", "status", "detail", "errors"}, body
    assert (body["type"], body["title"], body["status"]) == (
        "/problems/validation-error",
        "Validation error",
        422,
    )
    errors: list[dict[str, str]] = body["errors"]
    for item in errors:
        assert len(item) == 2 and isinstance(item.get("detail"), str) and item["detail"], item
    found = sorted((k, v) for item in errors for k, v in item.items() if k != "detail")
    assert found == sorted(where), errors
    return errors


def new_id() -> str:
    return str(uuid.uuid4())


async def append(
    client: httpx.AsyncClient,
    stream_id: str,
    *events: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post(f"/streams/{stream_id}", json=append_body(*events), headers=headers)


async def append_ok(
    client: httpx.AsyncClient, stream_id: str, *events: dict[str, Any]
) -> dict[str, Any]:
    """Append and insist on 201; returns the receipt."""
    response = await append(client, stream_id, *events)
    assert response.status_code == 201, response.text
    receipt: dict[str, Any] = response.json()
    return receipt


async def fill(
    client: httpx.AsyncClient, stream_id: str, count: int, type: str = "Happened"
) -> None:
    """Append `count` events to a stream in one request, data {"i": 1..count}."""
    events = [event_body(type=type, data={"i": i}) for i in range(1, count + 1)]
    await append_ok(client, stream_id, *events)


async def post_raw(
    client: httpx.AsyncClient,
    stream_id: str,
    content: bytes | AsyncIterable[bytes],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post(f"/streams/{stream_id}", content=content, headers=headers or JSON)


async def log_head(client: httpx.AsyncClient) -> int:
    response = await client.get("/events", params={"limit": 1})
    assert response.status_code == 200, response.text
    head: int = response.json()["head"]
    return head


async def stream_version(client: httpx.AsyncClient, stream_id: str) -> int:
    """0 when the stream has no events (404)."""
    response = await client.get(f"/streams/{stream_id}", params={"limit": 1})
    if response.status_code == 404:
        return 0
    assert response.status_code == 200, response.text
    version: int = response.json()["version"]
    return version


def raw_event(type: str = "Happened", data: str = '{"n":1}', extra: str = "") -> str:
    """One event as JSON text, so that tests can send what `json.dumps` never writes."""
    return f'{{"id":{json.dumps(new_id())},"type":{json.dumps(type)},"data":{data}{extra}}}'


def raw_body(*events: str) -> bytes:
    return ('{"events":[' + ",".join(events or (raw_event(),)) + "]}").encode()


@contextlib.asynccontextmanager
async def client_of(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app built with these settings (for tests that change one)."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client
