"""Problem details themselves (contract sections 1 and 10): one fixed title per slug,
404 for unknown routes, 405 with Allow, a 500 that reveals nothing, and no request
shape that ends in a 500."""

from __future__ import annotations

import json
from typing import Any

import httpx
from fastapi import FastAPI

from app.api import problems as registry
from tests.api import JSON, PROBLEM_JSON, TITLES, append_ok, assert_problem, new_id
from tests.support.factories import event_body

UNKNOWN_ROUTES: list[tuple[str, str]] = [
    ("GET", "/"),
    ("GET", "/nope"),
    ("GET", "/stream/Order-1"),
    ("GET", "/streams/Order-1/1/extra"),
    ("GET", "/events/1/extra"),
    ("POST", "/nope"),
    ("DELETE", "/nope/deeper"),
    ("PUT", "/streams/Order-1/1/x"),
]


async def test_unknown_routes_are_404_not_found(client: httpx.AsyncClient) -> None:
    for method, path in UNKNOWN_ROUTES:
        response = await client.request(method, path, content=b"{}", headers=JSON)
        assert response.status_code == 404, (method, path)
        assert_problem(response, 404, "not-found")


# (method, path, methods the Allow header must name)
WRONG_METHODS: list[tuple[str, str, set[str]]] = [
    ("DELETE", "/streams/Order-1", {"GET", "HEAD", "POST"}),
    ("PUT", "/streams/Order-1", {"GET", "HEAD", "POST"}),
    ("PATCH", "/streams/Order-1", {"GET", "HEAD", "POST"}),
    ("OPTIONS", "/streams/Order-1", {"GET", "HEAD", "POST"}),
    ("POST", "/streams", {"GET"}),
    ("DELETE", "/streams", {"GET"}),
    ("POST", "/streams/Order-1/1", {"GET"}),
    ("PUT", "/events", {"GET", "POST"}),
    ("DELETE", "/events/1", {"GET"}),
]


async def test_wrong_methods_are_405_with_allow(client: httpx.AsyncClient) -> None:
    await append_ok(client, "Order-1", event_body())
    for method, path, allowed in WRONG_METHODS:
        response = await client.request(method, path, content=b"{}", headers=JSON)
        assert response.status_code == 405, (method, path)
        assert_problem(response, 405, "method-not-allowed")
        allow = {m.strip() for m in response.headers["allow"].split(",")}
        assert allowed <= allow, (method, path, allow)
        assert method not in allow
    assert (await client.get("/events")).json()["head"] == 1


async def test_an_unexpected_failure_is_a_500_that_reveals_nothing(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    async def explode() -> dict[str, Any]:
        raise RuntimeError("secret: password=hunter2 at /srv/evstore/app/store/append.py")

    app.add_api_route("/explode", explode)
    response = await client.get("/explode")
    assert_problem(response, 500, "internal-error")
    for leak in ("secret", "hunter2", "append.py", "RuntimeError", "Traceback"):
        assert leak not in response.text


async def test_each_slug_has_one_title_whatever_the_cause(client: httpx.AsyncClient) -> None:
    taken = new_id()
    await append_ok(client, "Order-1", event_body(id=taken))
    causes: dict[str, list[httpx.Response]] = {
        "malformed-json": [
            await client.post("/streams/Order-1", content=b"", headers=JSON),
            await client.post("/streams/Order-1", content=b'{"a":1,"a":1}', headers=JSON),
        ],
        "invalid-precondition": [
            await client.post("/streams/Order-1", json={}, headers={"If-Match": "3"}),
            await client.post("/streams/Order-1", json={}, headers={"If-None-Match": '"3"'}),
            await client.get("/streams/Order-1", headers={"If-None-Match": "W/3"}),
        ],
        "stream-not-found": [
            await client.get("/streams/Order-2"),
            await client.get("/streams/Order-2", params={"direction": "backward"}),
        ],
        "event-not-found": [
            await client.get("/streams/Order-1/2"),
            await client.get("/events/2"),
        ],
        "not-found": [await client.get("/nope"), await client.post("/nope")],
        "method-not-allowed": [
            await client.delete("/streams/Order-1"),
            await client.put("/events"),
        ],
        "duplicate-event-id": [
            await client.post("/streams/Order-2", json={"events": [event_body(id=taken)]}),
            await client.post(
                "/streams/Order-1", json={"events": [event_body(), event_body(id=taken)]}
            ),
        ],
        "wrong-expected-version": [
            await client.post(
                "/streams/Order-1", json={"events": [event_body()]}, headers={"If-Match": '"5"'}
            ),
            await client.post(
                "/streams/Order-3", json={"events": [event_body()]}, headers={"If-Match": "*"}
            ),
        ],
        "payload-too-large": [
            await client.post(
                "/streams/Order-1", json={"events": [{"type": "A", "data": 0}] * 1001}
            ),
            await client.post(
                "/streams/Order-1", json={"events": [{"type": "A", "data": "x" * 1024 * 1024}]}
            ),
        ],
        "unsupported-media-type": [
            await client.post("/streams/Order-1", content=b"{}"),
            await client.post("/streams/Order-1", content=b"{}", headers={"Content-Type": "a/b"}),
        ],
        "validation-error": [
            await client.post("/streams/Order-1", json={"events": []}),
            await client.get("/events", params={"limit": 0}),
            await client.get("/streams/$all"),
        ],
    }
    statuses = {
        "malformed-json": 400,
        "invalid-precondition": 400,
        "stream-not-found": 404,
        "event-not-found": 404,
        "not-found": 404,
        "method-not-allowed": 405,
        "duplicate-event-id": 409,
        "wrong-expected-version": 412,
        "payload-too-large": 413,
        "unsupported-media-type": 415,
        "validation-error": 422,
    }
    for slug, responses in causes.items():
        for response in responses:
            assert response.status_code == statuses[slug], (slug, response.text)
            assert response.headers["content-type"] == PROBLEM_JSON
            body = response.json()
            assert body["type"] == f"/problems/{slug}"
            assert body["title"] == TITLES[slug]
            assert body["status"] == statuses[slug]
            assert isinstance(body["detail"], str) and body["detail"]
    assert (await client.get("/events")).json()["head"] == 1


ODD_REQUESTS: list[tuple[str, str, dict[str, str], bytes | None]] = [
    ("GET", "/streams/%ff", {}, None),
    ("GET", "/streams/a%00", {}, None),
    ("GET", "/streams/" + "a" * 5000, {}, None),
    ("GET", "/streams/Order-1/" + "9" * 5000, {}, None),
    ("GET", "/events/" + "9" * 5000, {}, None),
    ("GET", "/events?after=" + "9" * 5000, {}, None),
    ("GET", "/events?limit=" + "9" * 5000, {}, None),
    ("GET", "/events?wait=1e999999", {}, None),
    ("GET", "/events?stream=%ff&type=%00&category=%20", {}, None),
    ("GET", "/events?" + "&".join(["type=A"] * 150), {}, None),
    ("GET", "/streams?after=%ff&prefix=%00", {}, None),
    ("GET", "/streams/Order-1?from=-" + "9" * 100, {}, None),
    ("GET", "/streams/Order-1", {"If-None-Match": '"' + "9" * 5000 + '"'}, None),
    ("GET", "/streams/Order-1", {"If-None-Match": ","}, None),
    ("POST", "/streams/Order-1", {**JSON, "If-Match": '"' + "9" * 5000 + '"'}, b"{}"),
    ("POST", "/streams/Order-1", {**JSON, "If-Match": ","}, b"{}"),
    ("POST", "/streams/Order-1", {**JSON, "If-Match": "\t"}, b"{}"),
    ("POST", "/streams/Order-1", {"Content-Type": "application/json; charset"}, b"{}"),
    ("POST", "/streams/Order-1", {"Content-Type": ";"}, b"{}"),
    ("POST", "/streams/Order-1", JSON, b"\x00"),
    ("POST", "/streams/Order-1", JSON, b'"\\ud800"'),
    ("POST", "/streams/Order-1", JSON, b'{"events":[{"type":"A","data":1}],"\\ud800":1}'),
    ("POST", "/streams/Order-1", JSON, b'{"events":[{"type":"A","data":1,"\\u0000":1}]}'),
    ("POST", "/streams/Order-1", JSON, b'{"events":[{"type":"\\ud800","data":1}]}'),
    ("POST", "/streams/Order-1", JSON, b'{"events":[{"id":"\\u0000","type":"A","data":1}]}'),
    ("POST", "/streams/Order-1", JSON, b'{"events":[{"type":"A","data":1}]' + b"]" * 10),
    ("POST", "/streams/Order-1", JSON, b"[" * 200_000),
    ("POST", "/streams/Order-1", JSON, b'{"events":' + b"[" * 200_000),
    ("POST", "/streams/Order-1", JSON, b'{"events":[{"type":"A","data":' + b"9" * 200_000 + b"}]}"),
    ("POST", "/streams/Order-1", JSON, b'{"events":[{"type":"A","data":1.' + b"9" * 5000 + b"}]}"),
]


async def test_no_request_shape_ends_in_a_500(client: httpx.AsyncClient) -> None:
    await append_ok(client, "Order-1", event_body())
    for method, url, headers, content in ODD_REQUESTS:
        response = await client.request(method, url, headers=headers, content=content)
        where = (method, url[:80], headers, (content or b"")[:80])
        assert response.status_code < 500, (where, response.status_code, response.text)
        if response.status_code < 400:  # a float of 5000 digits is a fine double
            continue
        assert response.headers["content-type"] == PROBLEM_JSON, where
        body = response.json()
        assert body["type"].startswith("/problems/") and body["status"] == response.status_code
        assert body["title"] == TITLES[body["type"].removeprefix("/problems/")]


def test_the_registry_gives_each_slug_one_status_and_title() -> None:
    """One table (app/api/problems.py) renders every problem; a slug means one thing."""
    rows: dict[str, set[tuple[int, str]]] = {}
    for kind in (*registry.TABLE.values(), registry.INTERNAL, registry.UNAVAILABLE):
        rows.setdefault(kind.slug, set()).add((kind.status, kind.title))
    assert all(len(found) == 1 for found in rows.values()), rows
    titles = {slug: next(iter(found))[1] for slug, found in rows.items()}
    assert {s: t for s, t in titles.items() if s in TITLES} == TITLES
    assert set(titles) - set(TITLES) <= {
        "snapshot-not-found",
        "subscription-not-found",
        "stale-snapshot",
        "subscription-conflict",
        "checkpoint-moved",
        "unavailable",
        "request-timeout",
        "headers-too-large",
    }


def test_the_http_server_renders_its_refusals_from_the_registry() -> None:
    raw = registry.render_bytes(registry.HeadersTooLargeError("too many"))
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert json.loads(body) == {
        "type": "/problems/headers-too-large",
        "title": "Request header fields too large",
        "status": 431,
        "detail": "too many",
    }
