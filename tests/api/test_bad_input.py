"""Bad input: every rejection is a 4xx application/problem+json naming what was wrong,
never a 500, and a rejected append writes nothing (contract sections 1, 2, 7 and 9)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings
from tests.api import (
    JSON,
    PROBLEM_JSON,
    append,
    append_ok,
    assert_problem,
    assert_validation,
    log_head,
    new_id,
    post_raw,
    raw_body,
    raw_event,
)
from tests.support.factories import append_body, event_body

MiB = 1024 * 1024


@pytest.fixture(params=["fast-path", "through-fastapi"])
def fast_append(request: pytest.FixtureRequest) -> bool:
    """Bad appends are answered alike with and without the front's fast path."""
    return bool(request.param == "fast-path")


def valid() -> bytes:
    """A good append body with a fresh event id."""
    return json.dumps(append_body(event_body())).encode()


def padded(size: int) -> bytes:
    """A good append body, padded with whitespace to exactly `size` bytes."""
    body = valid()
    return body + b" " * (size - len(body))


@pytest.fixture
async def seeded(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """A client on a store holding two events, so that 'nothing written' is visible."""
    await append_ok(client, "Order-1", event_body(), event_body())
    return client


async def assert_nothing_written(client: httpx.AsyncClient, head: int = 2) -> None:
    assert await log_head(client) == head
    assert (await client.get("/streams/Order-1")).json()["version"] == head


MALFORMED: list[bytes] = [
    b"",
    b" \n\t",
    b"{",
    b"not json",
    b"'events'",
    b'{"events": [}',
    b'{"events": [{"type": "A", "data": 1,}]}',
    b'{"events": [{"type": "A", "data": 1}]} trailing',
    b'{"events": [{"type": "A", "data": 1}]}{}',
    b'{"events": [{"type": "A", "data": nan}]}',
    b'{"events": [{"type": "A", "data": 01}]}',
    b'{"events": [{"type": "A", "data": "\\x"}]}',
    b'{"events": [{"type": "A", "data": "raw\ncontrol"}]}',
    b'{"events": [{"type": "A", "data": "\xff\xfe"}]}',
    b'\xef\xbb\xbf{"events": [{"type": "A", "data": 1}]}',
    # a repeated member name, anywhere, cannot be stored faithfully
    b'{"events": [], "events": [{"type": "A", "data": 1}]}',
    b'{"events": [{"type": "A", "type": "B", "data": 1}]}',
    b'{"events": [{"type": "A", "data": {"a": 1, "b": 2, "a": 1}}]}',
    b'{"events": [{"type": "A", "data": [{"x": {"y": 1, "y": 2}}]}]}',
    b'{"events": [{"type": "A", "data": 1, "metadata": {"k": 1, "k": 1}}]}',
    b'{"events": [{"type": "A", "data": {"\\u0061": 1, "a": 2}}]}',
    # colons inside strings, escaped colons and spaces must not hide a repeat
    b'{"events": [{"type": "A", "data": {"a": "x:y", "a": "z"}}]}',
    b'{"events": [{"type": "A", "data": {"a:b": 1, "a:b": 2, "c": ":"}}]}',
    b'{"events": [{"type": "A", "data": {"\\u003a": 1, ":": 2}}]}',
    b'{"events": [{"type": "A", "data": {"k" : 1 , "k"  :  2}}]}',
]


async def test_malformed_json_is_400(seeded: httpx.AsyncClient) -> None:
    for body in MALFORMED:
        response = await post_raw(seeded, "Order-1", body)
        assert response.status_code == 400, (body, response.text)
        assert_problem(response, 400, "malformed-json")
    await assert_nothing_written(seeded)


async def test_media_types(seeded: httpx.AsyncClient) -> None:
    no_header = await seeded.post("/streams/Order-1", content=valid())
    assert "content-type" not in no_header.request.headers
    assert_problem(no_header, 415, "unsupported-media-type")
    for content_type in [
        "",
        "text/plain",
        "text/json",
        "application/x-www-form-urlencoded",
        "application/problem+json",
        "application/jsonx",
        "application/json; charset=latin-1",
        "application/json; charset=utf-16",
        "multipart/form-data; boundary=x",
    ]:
        response = await post_raw(seeded, "Order-1", valid(), {"Content-Type": content_type})
        assert response.status_code == 415, content_type
        assert_problem(response, 415, "unsupported-media-type")
    # the media type is checked before the body is parsed
    junk = await post_raw(seeded, "Order-1", b"{", {"Content-Type": "text/plain"})
    assert_problem(junk, 415, "unsupported-media-type")
    await assert_nothing_written(seeded)

    for content_type in [
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        'application/json; charset="utf-8"',
        "Application/JSON",
    ]:
        body = json.dumps(append_body(event_body())).encode()
        response = await post_raw(seeded, "Order-1", body, {"Content-Type": content_type})
        assert response.status_code == 201, (content_type, response.text)


# (body, pointers named in `errors`)
SCHEMA: list[tuple[Any, list[str]]] = [
    ([], ["/events"]),
    ("events", ["/events"]),
    ({}, ["/events"]),
    ({"events": None}, ["/events"]),
    ({"events": {}}, ["/events"]),
    ({"events": []}, ["/events"]),
    ({"events": [event_body()], "extra": 1}, ["/extra"]),
    ({"events": [1]}, ["/events/0"]),
    ({"events": [None]}, ["/events/0"]),
    ({"events": [[]]}, ["/events/0"]),
    ({"events": [{"type": "A"}]}, ["/events/0/data"]),
    ({"events": [{"data": 1}]}, ["/events/0/type"]),
    ({"events": [{}]}, ["/events/0/type", "/events/0/data"]),
    ({"events": [{"type": "A", "data": 1, "Data": 2}]}, ["/events/0/Data"]),
    ({"events": [{"type": "A", "data": 1, "metadata": []}]}, ["/events/0/metadata"]),
    ({"events": [{"type": "A", "data": 1, "metadata": "x"}]}, ["/events/0/metadata"]),
    ({"events": [{"type": "A", "data": 1, "metadata": None}]}, ["/events/0/metadata"]),
    ({"events": [{"type": "A", "data": 1, "metadata": 1}]}, ["/events/0/metadata"]),
    *(
        ({"events": [{"id": bad, "type": "A", "data": 1}]}, ["/events/0/id"])
        for bad in ["", "not-a-uuid", "0f0c0000-0000-0000-0000-00000000000", 7, None, []]
    ),
    *(
        ({"events": [{"type": bad, "data": 1}]}, ["/events/0/type"])
        for bad in ["", "1abc", "_a", "-a", "a b", "a/b", "é", "$a", "A" * 201, 7, None, ["A"]]
    ),
]


async def test_schema_errors_are_422_with_pointers(seeded: httpx.AsyncClient) -> None:
    for body, pointers in SCHEMA:
        response = await seeded.post("/streams/Order-1", json=body)
        assert_validation(response, *(("pointer", p) for p in pointers))
    await assert_nothing_written(seeded)
    longest = await append(seeded, "Order-1", event_body(type="A" * 200))
    assert longest.status_code == 201


async def test_every_problem_of_a_request_is_listed(seeded: httpx.AsyncClient) -> None:
    same = new_id()
    body = {
        "events": [
            {"type": "A", "data": 1, "id": same},
            {"data": 1},
            {"id": "nope", "type": "9", "metadata": []},
            {"id": same, "type": "A", "data": {"ok": [1, 2]}, "extra": True},
            "event",
        ],
        "expected_version": 3,
    }
    response = await seeded.post("/streams/Order-1", json=body)
    errors = assert_validation(
        response,
        ("pointer", "/expected_version"),
        ("pointer", "/events/1/type"),
        ("pointer", "/events/2/id"),
        ("pointer", "/events/2/type"),
        ("pointer", "/events/2/data"),
        ("pointer", "/events/2/metadata"),
        ("pointer", "/events/3/extra"),
        ("pointer", "/events/3/id"),
        ("pointer", "/events/4"),
    )
    assert len(errors) == 9
    await assert_nothing_written(seeded)


# (data or metadata JSON text inside one event, pointers)
UNSTORABLE: list[tuple[str, list[str]]] = [
    ('"data":NaN', ["/events/0/data"]),
    ('"data":Infinity', ["/events/0/data"]),
    ('"data":-Infinity', ["/events/0/data"]),
    ('"data":1e400', ["/events/0/data"]),
    ('"data":-1e400', ["/events/0/data"]),
    ('"data":1' + "0" * 400 + ".5", ["/events/0/data"]),
    ('"data":[1,NaN,{"x":Infinity}]', ["/events/0/data/1", "/events/0/data/2/x"]),
    ('"data":{"a/b~c":NaN}', ["/events/0/data/a~1b~0c"]),
    ('"data":1,"metadata":{"m":1e400}', ["/events/0/metadata/m"]),
    ('"data":1,"metadata":{"m":[-Infinity]}', ["/events/0/metadata/m/0"]),
    ('"data":"a\\u0000b"', ["/events/0/data"]),
    ('"data":{"k":["\\u0000"]}', ["/events/0/data/k/0"]),
    ('"data":{"a\\u0000b":1}', ["/events/0/data/a\x00b"]),
    ('"data":1,"metadata":{"k":"\\u0000"}', ["/events/0/metadata/k"]),
    ('"data":1,"metadata":{"\\u0000":"v"}', ["/events/0/metadata/\x00"]),
    ('"data":"\\ud800"', ["/events/0/data"]),
    ('"data":{"s":"x\\udc00y"}', ["/events/0/data/s"]),
    ('"data":["\\ud83c"]', ["/events/0/data/0"]),
    ('"data":{"\\ud800":1}', ["/events/0/data/\ud800"]),
    ('"data":1,"metadata":{"k":"\\udfff"}', ["/events/0/metadata/k"]),
    ('"data":' + "7" * 5000, ["/events/0/data"]),
    ('"data":{"n":-' + "7" * 5000 + "}", ["/events/0/data/n"]),
]


async def test_values_that_cannot_be_stored_are_422(seeded: httpx.AsyncClient) -> None:
    for members, pointers in UNSTORABLE:
        body = ('{"events":[{"type":"A",' + members + "}]}").encode()
        response = await post_raw(seeded, "Order-1", body)
        assert response.status_code == 422, (members, response.text)
        assert_validation(response, *(("pointer", p) for p in pointers))
    # the same problems in a later event of a batch, next to a good one
    body = raw_body(raw_event(), raw_event(data='{"ok":NaN}'))
    assert_validation(await post_raw(seeded, "Order-1", body), ("pointer", "/events/1/data/ok"))
    await assert_nothing_written(seeded)


def nested(levels: int, kind: str = "array") -> str:
    if kind == "array":
        return "[" * levels + "]" * levels
    return '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)


async def test_nesting_deeper_than_64_is_422(seeded: httpx.AsyncClient) -> None:
    cases = [
        (f'"data":{nested(65)}', "/events/0/data" + "/0" * 64),
        (f'"data":{nested(65, "object")}', "/events/0/data" + "/a" * 64),
        (f'"data":{{"list":{nested(64)}}}', "/events/0/data/list" + "/0" * 63),
        (f'"data":1,"metadata":{nested(65, "object")}', "/events/0/metadata" + "/a" * 64),
        (f'"data":{nested(100_000)}', ""),
    ]
    for members, at in cases:
        body = ('{"events":[{"type":"A",' + members + "}]}").encode()
        response = await post_raw(seeded, "Order-1", body)
        assert response.status_code == 422, (members[:40], response.text)
        errors = assert_validation(response, ("pointer", at))
        assert errors[0]["pointer"] == at
    await assert_nothing_written(seeded)

    deepest = ('{"events":[{"type":"A","data":' + nested(64) + "}]}").encode()
    assert (await post_raw(seeded, "Order-1", deepest)).status_code == 201
    event = (await seeded.get("/streams/Order-1/3")).json()
    assert json.dumps(event["data"], separators=(",", ":")) == nested(64)


INVALID_STREAM_IDS = [
    "$all",
    "$ce-Order",
    "a" * 201,
    "a b",
    "é",
    "-abc",
    "_x",
    ".x",
    "~x",
    "=x",
    "@x",
    ":x",
    "a*b",
    "a+b",
    "a!b",
    "a,b",
    "a;b",
    "a%b",
    "a\x00b",
    "a\tb",
    "a'b",
]


async def test_invalid_stream_ids_are_422(seeded: httpx.AsyncClient) -> None:
    for stream_id in INVALID_STREAM_IDS:
        path = "/streams/" + quote(stream_id, safe="")
        for method, url in [
            ("POST", path),
            ("GET", path),
            ("HEAD", path),
            ("GET", path + "/1"),
        ]:
            response = await seeded.request(method, url, content=valid(), headers=JSON)
            assert response.status_code == 422, (stream_id, method, url)
            if method != "HEAD":
                assert_validation(response, ("parameter", "stream_id"))
    await assert_nothing_written(seeded)


# (path, query, the parameters named)
BAD_PARAMETERS: list[tuple[str, dict[str, Any], list[str]]] = [
    *(("/events", {"limit": v}, ["limit"]) for v in [2**63, 2**64, 0, 1001, -1, "x", 1.5, ""]),
    *(("/events", {"after": v}, ["after"]) for v in [2**63, 10**30, -1, "x", "1e3", ""]),
    *(("/events", {"wait": v}, ["wait"]) for v in [61, -1, "x", "nan", "inf", "-inf", ""]),
    ("/events", {"limit": 0, "after": -1}, ["limit", "after"]),
    ("/events", {"stream": "$all"}, ["stream"]),
    ("/events", {"category": "-x"}, ["category"]),
    ("/events", {"type": "1x"}, ["type"]),
    ("/events", {"stream": ["ok", "$a", "b c"]}, ["stream", "stream"]),
    ("/events", {"stream": "$a", "category": "é", "type": "A b"}, ["stream", "category", "type"]),
    *(("/streams/Order-1", {"from": v}, ["from"]) for v in [2**63, 0, -1, "x", ""]),
    *(("/streams/Order-1", {"limit": v}, ["limit"]) for v in [2**63, 0, 1001, "x"]),
    ("/streams/Order-1", {"direction": "sideways"}, ["direction"]),
    ("/streams/Order-1", {"from": 0, "limit": 0}, ["from", "limit"]),
    *(("/streams", {"limit": v}, ["limit"]) for v in [2**64, 0, 1001]),
    ("/streams", {"prefix": "$x"}, ["prefix"]),
    ("/streams", {"after": "a b"}, ["after"]),
    *((f"/streams/Order-1/{v}", {}, ["version"]) for v in [2**63, 10**40, 0, -1, "x", "1.5"]),
    *((f"/events/{v}", {}, ["position"]) for v in [2**63, 10**40, 0, -1, "x", "1.5"]),
]


async def test_bad_numbers_and_names_in_paths_and_queries_are_422(
    seeded: httpx.AsyncClient,
) -> None:
    for path, params, names in BAD_PARAMETERS:
        response = await seeded.get(path, params=params)
        assert response.status_code == 422, (path, params, response.text)
        assert_validation(response, *(("parameter", n) for n in names))
    ok = await seeded.get("/events", params={"limit": 1000, "after": 2**63 - 1})
    assert ok.status_code == 200


async def test_bad_numbers_in_precondition_headers_are_400(seeded: httpx.AsyncClient) -> None:
    for headers in [
        {"If-Match": '"99999999999999999999"'},
        {"If-Match": '"1", "9223372036854775808"'},
    ]:
        response = await append(seeded, "Order-1", event_body(), headers=headers)
        assert_problem(response, 400, "invalid-precondition")
    await assert_nothing_written(seeded)
    for tag in ['"99999999999999999999"', '"3', "3"]:
        read = await seeded.get("/streams/Order-1", headers={"If-None-Match": tag})
        assert_problem(read, 400, "invalid-precondition")


async def test_limits_at_their_defaults(seeded: httpx.AsyncClient) -> None:
    too_many = await seeded.post(
        "/streams/Order-1", json={"events": [{"type": "A", "data": i} for i in range(1001)]}
    )
    assert_problem(too_many, 413, "payload-too-large", limit="max_events_per_append", max=1000)

    large = raw_body(raw_event(data=json.dumps("x" * MiB)))
    assert len(large) < 4 * MiB
    assert_problem(
        await post_raw(seeded, "Order-1", large),
        413,
        "payload-too-large",
        limit="max_event_bytes",
        max=MiB,
    )
    over = padded(4 * MiB + 1)
    assert_problem(
        await post_raw(seeded, "Order-1", over),
        413,
        "payload-too-large",
        limit="max_body_bytes",
        max=4 * MiB,
    )
    assert_problem(
        await post_raw(seeded, "Order-1", chunked(over)),
        413,
        "payload-too-large",
        limit="max_body_bytes",
        max=4 * MiB,
    )
    await assert_nothing_written(seeded)

    most = await seeded.post(
        "/streams/Order-1", json={"events": [{"type": "A", "data": i} for i in range(1000)]}
    )
    assert most.status_code == 201
    at_limit = padded(4 * MiB)
    assert (await post_raw(seeded, "Order-1", at_limit)).status_code == 201
    big_event = raw_body(raw_event(data=json.dumps("x" * (MiB - 100))))
    assert (await post_raw(seeded, "Order-1", big_event)).status_code == 201
    assert await log_head(seeded) == 1004


async def chunked(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """The body as a stream: httpx sends it chunked, without a Content-Length."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.fixture
async def small(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client on an app with small limits, so that payloads stay small."""
    settings = Settings(
        database_url=database_url,
        migrate_on_start=False,
        max_body_bytes=1024,
        max_event_bytes=256,
        max_events_per_append=3,
        max_json_depth=4,
    )
    application: FastAPI = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://evstore") as c:
            await append_ok(c, "Order-1", event_body(), event_body())
            yield c


async def test_limits_are_settings(small: httpx.AsyncClient) -> None:
    four = {"events": [{"type": "A", "data": i} for i in range(4)]}
    assert_problem(
        await small.post("/streams/Order-1", json=four),
        413,
        "payload-too-large",
        limit="max_events_per_append",
        max=3,
    )
    for pad in (1025, 5000):
        over = padded(pad)
        for content in (over, chunked(over, 100)):
            response = await post_raw(small, "Order-1", content)
            assert_problem(response, 413, "payload-too-large", limit="max_body_bytes", max=1024)
    data_and_metadata = raw_event(
        data=json.dumps("d" * 150), extra=f',"metadata":{{"m":"{"m" * 150}"}}'
    )
    assert_problem(
        await post_raw(small, "Order-1", raw_body(data_and_metadata)),
        413,
        "payload-too-large",
        limit="max_event_bytes",
        max=256,
    )
    second_too_big = raw_body(raw_event(), raw_event(data=json.dumps("d" * 300)))
    assert_problem(
        await post_raw(small, "Order-1", second_too_big),
        413,
        "payload-too-large",
        limit="max_event_bytes",
        max=256,
    )
    deep = raw_body(raw_event(data=nested(5)))
    assert_validation(await post_raw(small, "Order-1", deep), ("pointer", "/events/0/data/0/0/0/0"))
    await assert_nothing_written(small)

    three = {"events": [{"type": "A", "data": i} for i in range(3)]}
    assert (await small.post("/streams/Order-1", json=three)).status_code == 201
    exactly = padded(1024)
    assert (await post_raw(small, "Order-1", exactly)).status_code == 201
    assert (await post_raw(small, "Order-1", chunked(padded(1024), 100))).status_code == 201
    assert (
        await post_raw(small, "Order-1", raw_body(raw_event(data=json.dumps("d" * 200))))
    ).status_code == 201
    assert (
        await post_raw(small, "Order-1", raw_body(raw_event(data=nested(4))))
    ).status_code == 201
    assert await log_head(small) == 9


async def test_a_declared_length_over_the_limit_is_refused_before_the_body(
    small: httpx.AsyncClient,
) -> None:
    never = asyncio.Event()

    async def body_that_never_comes() -> AsyncIterator[bytes]:
        await never.wait()
        yield b"{}"

    request = small.post(
        "/streams/Order-1",
        content=body_that_never_comes(),
        headers={**JSON, "Content-Length": "1025"},
    )
    response = await asyncio.wait_for(request, timeout=30)
    assert_problem(response, 413, "payload-too-large", limit="max_body_bytes", max=1024)
    assert response.headers["content-type"] == PROBLEM_JSON
    await assert_nothing_written(small)


@pytest.mark.parametrize("count", [150, 200_000])
async def test_a_422_lists_at_most_100_problems_and_counts_the_rest(
    seeded: httpx.AsyncClient, count: int
) -> None:
    # 200,000 NaNs (800 KB) are parsed off the event loop; the answer stays small
    data = "[" + ",".join(["NaN"] * count) + "]"
    response = await post_raw(seeded, "Order-1", raw_body(raw_event(data=data)))
    assert response.status_code == 422
    body = response.json()
    assert len(body["errors"]) == 100
    assert body["errors"][0] == {
        "pointer": "/events/0/data/0",
        "detail": "NaN is not a JSON number",
    }
    assert body["errors_not_listed"] == count - 100
    assert f"and {count - 1} more" in body["detail"]
    assert len(response.content) < 20_000
    await assert_nothing_written(seeded)
