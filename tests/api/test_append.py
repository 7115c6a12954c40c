"""POST /streams/{stream_id}: receipts, preconditions, atomicity, idempotent retries,
duplicate ids and faithful storage of data and metadata (contract sections 2 and 9).

Every test runs twice per backend: once through the front's append fast path, once
with it turned off, so that both paths are proven to answer alike."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest

from tests.api import (
    append,
    append_ok,
    assert_problem,
    assert_validation,
    fill,
    log_head,
    new_id,
    post_raw,
    raw_body,
    raw_event,
    stream_version,
)
from tests.support.factories import event_body


@pytest.fixture(params=["fast-path", "through-fastapi"])
def fast_append(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "fast-path")


async def test_append_answers_201_with_etag_location_and_receipt(
    client: httpx.AsyncClient,
) -> None:
    ids = [new_id() for _ in range(3)]
    first = await append(client, "Order-1", *(event_body(id=i) for i in ids))
    assert first.status_code == 201, first.text
    assert first.headers["content-type"] == "application/json"
    assert first.headers["etag"] == '"3"'
    assert first.headers["location"] == "/streams/Order-1/1"
    assert first.json() == {
        "stream_id": "Order-1",
        "version": 3,
        "events": [
            {"id": ids[0], "version": 1, "position": 1},
            {"id": ids[1], "version": 2, "position": 2},
            {"id": ids[2], "version": 3, "position": 3},
        ],
    }

    other = await append(client, "Order-2", event_body(), event_body())
    assert other.status_code == 201
    assert [(e["version"], e["position"]) for e in other.json()["events"]] == [(1, 4), (2, 5)]

    more = [new_id(), new_id()]
    second = await append(client, "Order-1", *(event_body(id=i) for i in more))
    assert second.status_code == 201
    assert second.headers["etag"] == '"5"'
    assert second.headers["location"] == "/streams/Order-1/4"
    assert second.json() == {
        "stream_id": "Order-1",
        "version": 5,
        "events": [
            {"id": more[0], "version": 4, "position": 6},
            {"id": more[1], "version": 5, "position": 7},
        ],
    }
    located = await client.get(second.headers["location"])
    assert located.status_code == 200
    assert (located.json()["id"], located.json()["version"]) == (more[0], 4)


async def test_location_of_a_stream_id_with_every_allowed_character(
    client: httpx.AsyncClient,
) -> None:
    stream_id = "a:b@c~d=e.f_g-H9"
    response = await append(client, stream_id, event_body())
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"/streams/{stream_id}/1"
    located = await client.get(response.headers["location"])
    assert located.status_code == 200
    assert located.json()["stream_id"] == stream_id

    longest = "L" * 200
    assert (await append(client, longest, event_body())).status_code == 201
    assert (await client.get(f"/streams/{longest}")).json()["version"] == 1


# (If-Match, If-None-Match, events already in the stream, expected status)
PRECONDITIONS: list[tuple[str | None, str | None, int, int]] = [
    (None, None, 0, 201),
    (None, None, 2, 201),
    (None, "*", 0, 201),
    (None, "*", 2, 412),
    ('"0"', None, 0, 201),
    ('"0"', None, 2, 412),
    ('"2"', None, 2, 201),
    ('"1"', None, 2, 412),
    ('"3"', None, 2, 412),
    ('"2"', None, 0, 412),
    ('"3", "4"', None, 3, 201),
    ('"3", "4"', None, 4, 201),
    ('"3","4"', None, 4, 201),
    ('"3", "4"', None, 2, 412),
    ('"3", "4"', None, 5, 412),
    ("*", None, 2, 201),
    ("*", None, 0, 412),
    ('W/"2"', None, 2, 412),
    ('W/"0"', None, 0, 412),
    ('"1", W/"2"', None, 2, 412),
    ('W/"1", "2"', None, 2, 201),
    ('"abc"', None, 2, 412),
]


async def test_every_precondition_row(client: httpx.AsyncClient) -> None:
    for n, (if_match, if_none_match, existing, status) in enumerate(PRECONDITIONS):
        case = f"case {n}: If-Match {if_match!r}, If-None-Match {if_none_match!r}, {existing}"
        stream_id = f"Pre-{n}"
        if existing:
            await fill(client, stream_id, existing)
        head = await log_head(client)
        headers = {}
        if if_match is not None:
            headers["If-Match"] = if_match
        if if_none_match is not None:
            headers["If-None-Match"] = if_none_match
        response = await append(client, stream_id, event_body(), headers=headers)
        assert response.status_code == status, case
        if status == 201:
            assert response.headers["etag"] == f'"{existing + 1}"', case
            assert response.headers["location"] == f"/streams/{stream_id}/{existing + 1}", case
            assert response.json()["events"][0]["position"] == head + 1, case
            continue
        assert_problem(
            response,
            412,
            "wrong-expected-version",
            stream_id=stream_id,
            expected=if_match if if_match is not None else if_none_match,
            current_version=existing,
        )
        if existing:
            assert response.headers["etag"] == f'"{existing}"', case
        else:
            assert "etag" not in response.headers, case
        assert await log_head(client) == head, case
        assert await stream_version(client, stream_id) == existing, case


async def test_412_echoes_the_header_exactly_as_sent(client: httpx.AsyncClient) -> None:
    await fill(client, "Order-1", 2)
    for sent in ['"7",  "8"', '"7",W/"2"', 'W/"2"', '"0"', '"1" ,, "3"']:
        response = await append(client, "Order-1", event_body(), headers={"If-Match": sent})
        assert_problem(
            response,
            412,
            "wrong-expected-version",
            stream_id="Order-1",
            expected=sent,
            current_version=2,
        )
        assert response.headers["etag"] == '"2"'
    assert await stream_version(client, "Order-1") == 2


MALFORMED_PRECONDITIONS: list[dict[str, str]] = [
    {"If-Match": "3"},
    {"If-Match": '"3'},
    {"If-Match": '3"'},
    {"If-Match": "W/3"},
    {"If-Match": 'W/"3'},
    {"If-Match": '"3" "4"'},
    {"If-Match": '"a b"'},
    {"If-Match": '*, "1"'},
    {"If-Match": ""},
    {"If-Match": '"99999999999999999999"'},
    {"If-Match": '"9223372036854775808"'},
    {"If-None-Match": '"1"'},
    {"If-None-Match": '"0"'},
    {"If-None-Match": 'W/"1"'},
    {"If-None-Match": '"*"'},
    {"If-None-Match": ""},
    {"If-Match": '"1"', "If-None-Match": "*"},
    {"If-Match": "*", "If-None-Match": "*"},
]


async def test_malformed_preconditions_are_400(client: httpx.AsyncClient) -> None:
    await fill(client, "Order-1", 1)
    for headers in MALFORMED_PRECONDITIONS:
        for stream_id in ("Order-1", "Order-new"):
            response = await append(client, stream_id, event_body(), headers=headers)
            assert response.status_code == 400, (headers, response.text)
            assert_problem(response, 400, "invalid-precondition")
    assert await log_head(client) == 1
    assert await stream_version(client, "Order-new") == 0


async def test_a_rejected_batch_writes_none_of_its_events(client: httpx.AsyncClient) -> None:
    taken = new_id()
    await append_ok(client, "Other-1", event_body(id=taken))

    invalid = await append(
        client, "Order-1", event_body(), event_body(), {"type": "Bad type!", "data": 1}
    )
    assert_validation(invalid, ("pointer", "/events/2/type"))
    duplicate = await append(client, "Order-1", event_body(), event_body(), event_body(id=taken))
    assert_problem(duplicate, 409, "duplicate-event-id", event_ids=[taken])
    stale = await append(client, "Order-1", event_body(), event_body(), headers={"If-Match": '"4"'})
    assert stale.status_code == 412

    assert await log_head(client) == 1
    assert await stream_version(client, "Order-1") == 0
    assert (await client.get("/streams")).json()["streams"][0]["stream_id"] == "Other-1"


async def test_concurrent_batches_get_consecutive_versions_and_positions(
    client: httpx.AsyncClient,
) -> None:
    streams = [f"Batch-{i % 3}" for i in range(9)]
    responses = await asyncio.gather(
        *(append(client, s, *(event_body() for _ in range(4))) for s in streams)
    )
    assert [r.status_code for r in responses] == [201] * 9
    for response in responses:
        receipt = response.json()
        versions = [e["version"] for e in receipt["events"]]
        positions = [e["position"] for e in receipt["events"]]
        assert versions == list(range(versions[0], versions[0] + 4))
        assert positions == list(range(positions[0], positions[0] + 4))
        assert receipt["version"] == versions[-1]
    log = (await client.get("/events", params={"limit": 1000})).json()
    assert [e["position"] for e in log["events"]] == list(range(1, 37))
    for i in range(0, 36, 4):  # every batch sits together in the log
        assert len({e["stream_id"] for e in log["events"][i : i + 4]}) == 1
    for name in set(streams):
        assert await stream_version(client, name) == 12


async def test_idempotent_retry_returns_the_original_receipt(client: httpx.AsyncClient) -> None:
    events = [event_body(type="OrderPlaced"), event_body(type="OrderPaid")]
    original = await append(client, "Order-1", *events, headers={"If-None-Match": "*"})
    assert original.status_code == 201
    await append_ok(client, "Order-1", event_body())
    await append_ok(client, "Order-2", event_body())
    head = await log_head(client)

    uppercase = [{**e, "id": e["id"].upper()} for e in events]
    for headers, sent in [
        ({"If-None-Match": "*"}, events),
        ({}, events),
        ({"If-Match": '"0"'}, events),
        ({"If-Match": '"99"'}, events),
        ({"If-Match": "*"}, events),
        ({"If-Match": 'W/"3"'}, events),
        ({}, uppercase),
    ]:
        retry = await append(client, "Order-1", *sent, headers=headers)
        assert retry.status_code == 200, (headers, retry.text)
        assert retry.json() == original.json()
        assert retry.headers["etag"] == original.headers["etag"]
        assert retry.headers["location"] == original.headers["location"]

    assert await log_head(client) == head
    assert await stream_version(client, "Order-1") == 3


async def test_identical_appends_at_once_write_once(client: httpx.AsyncClient) -> None:
    events = [event_body(), event_body()]
    responses = await asyncio.gather(*(append(client, "Order-1", *events) for _ in range(5)))
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 201]
    assert len({r.content for r in responses}) == 1
    assert await log_head(client) == 2


async def test_reused_ids_that_are_not_a_retry_are_409(client: httpx.AsyncClient) -> None:
    a, b, c = new_id(), new_id(), new_id()
    await append_ok(client, "Order-1", event_body(id=a), event_body(id=b), event_body(id=c))
    head = await log_head(client)
    fresh = new_id()
    cases: list[tuple[str, list[dict[str, Any]], list[str]]] = [
        ("Order-1", [event_body(id=a), event_body(id=fresh)], [a]),  # only some ids exist
        ("Order-1", [event_body(id=fresh), event_body(id=c)], [c]),
        ("Order-2", [event_body(id=a)], [a]),  # they live in another stream
        ("Order-2", [event_body(id=a), event_body(id=b), event_body(id=c)], [a, b, c]),
        ("Order-1", [event_body(id=b), event_body(id=a)], [a, b]),  # another order
        ("Order-1", [event_body(id=a), event_body(id=c)], [a, c]),  # not consecutive
        ("Order-1", [event_body(id=a), {"type": "NoId", "data": 1}], [a]),
    ]
    for stream_id, events, offending in cases:
        response = await append(client, stream_id, *events)
        assert response.status_code == 409, response.text
        assert sorted(response.json()["event_ids"]) == sorted(offending), (stream_id, events)
        assert_problem(response, 409, "duplicate-event-id", event_ids=response.json()["event_ids"])
        # a precondition does not turn a conflict into a 412
        pinned = await append(client, stream_id, *events, headers={"If-Match": '"3"'})
        assert pinned.status_code == 409, pinned.text
    assert await log_head(client) == head
    assert await stream_version(client, "Order-2") == 0


async def test_one_id_twice_in_a_request_is_422(client: httpx.AsyncClient) -> None:
    same = new_id()
    twice = await append(client, "Order-1", event_body(id=same), event_body(id=same))
    assert_validation(twice, ("pointer", "/events/1/id"))
    cased = await append(
        client, "Order-1", event_body(), event_body(id=same), event_body(id=same.upper())
    )
    assert_validation(cased, ("pointer", "/events/2/id"))
    assert await log_head(client) == 0


async def test_the_server_assigns_uuids_when_ids_are_absent(client: httpx.AsyncClient) -> None:
    receipt = await append_ok(client, "Order-1", {"type": "A", "data": 1}, {"type": "B", "data": 2})
    ids = [e["id"] for e in receipt["events"]]
    assert len(set(ids)) == 2
    for event_id in ids:
        assert str(uuid.UUID(event_id)) == event_id
    read = (await client.get("/streams/Order-1")).json()
    assert [e["id"] for e in read["events"]] == ids


async def test_metadata_is_optional_and_stored_as_sent(client: httpx.AsyncClient) -> None:
    given = {"correlation_id": "c-1", "causation_id": None, "nested": {"list": [1, 2.5]}}
    await append_ok(
        client,
        "Order-1",
        {"type": "NoMetadata", "data": 1},
        {"type": "EmptyMetadata", "data": 1, "metadata": {}},
        {"type": "WithMetadata", "data": 1, "metadata": given},
    )
    events = (await client.get("/streams/Order-1")).json()["events"]
    assert [e["metadata"] for e in events] == [{}, {}, given]
    logged = (await client.get("/events/1")).json()
    assert logged["metadata"] == {}


def same_json(sent: Any, read: Any) -> bool:
    """Equal values with the same JSON types all the way down (1 is not 1.0)."""
    if type(sent) is not type(read):
        return False
    if isinstance(sent, dict):
        return sent.keys() == read.keys() and all(same_json(sent[k], read[k]) for k in sent)
    if isinstance(sent, list):
        return len(sent) == len(read) and all(map(same_json, sent, read))
    return bool(sent == read)


DATA_TEXTS = [
    "null",
    "true",
    "false",
    "0",
    "-7",
    "1.5",
    "1.0",
    "-0.25",
    "2.5e10",
    "1e-07",
    "1e16",
    "-2.5e300",
    "1.7976931348623157e308",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551616",
    "18446744073709551617",
    "-340282366920938463463374607431768211457",
    "1" * 4000,
    '""',
    '"text"',
    "[]",
    "{}",
    '[1, "a", null, true, {"k": [false, 1.25, 99999999999999999999999]}]',
    '{"a": {"b": {"c": [1, 2, {"d": null}]}}, "e": 12345678901234567890123}',
]


async def test_data_of_every_json_type_reads_back_with_the_same_types(
    client: httpx.AsyncClient,
) -> None:
    metadata = '{"big": 36893488147419103233, "float": 2.0, "list": [null, false]}'
    events = [raw_event(data=text, extra=f',"metadata":{metadata}') for text in DATA_TEXTS]
    response = await post_raw(client, "Types-1", raw_body(*events))
    assert response.status_code == 201, response.text

    stream = json.loads((await client.get("/streams/Types-1")).content)["events"]
    log = json.loads((await client.get("/events")).content)["events"]
    one = json.loads((await client.get("/streams/Types-1/25")).content)
    assert one == stream[24]
    for text, from_stream, from_log in zip(DATA_TEXTS, stream, log, strict=True):
        assert same_json(json.loads(text), from_stream["data"]), (text, from_stream["data"])
        assert same_json(json.loads(text), from_log["data"]), text
        assert same_json(json.loads(metadata), from_stream["metadata"])
    assert b"18446744073709551617" in (await client.get("/streams/Types-1/17")).content


@pytest.mark.parametrize(
    "text",
    [
        "9223372036854775807",
        "-9223372036854775808",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775809",
        "99999999999999999999999",
        '{"n": [1, {"m": 340282366920938463463374607431768211457}]}',
        '{"a:b": "c:d", "e": ":"}',
        '{"\\u003a": 1}',
        '{"big": 1e16, "s": "1e+16", "l": [-3e20]}',
    ],
)
async def test_a_body_with_one_unusual_value_reads_back_exactly(
    client: httpx.AsyncClient, text: str
) -> None:
    # Each alone in its body, so that nothing else sends the body to the strict parser.
    response = await post_raw(client, "Exact-1", raw_body(raw_event(data=text)))
    assert response.status_code == 201, response.text
    stored = json.loads((await client.get("/streams/Exact-1")).content)["events"][-1]
    assert same_json(json.loads(text), stored["data"]), (text, stored["data"])


async def test_unicode_round_trips(client: httpx.AsyncClient) -> None:
    data = {
        "text": "héllo wörld",
        "emoji": "🌍🎉",
        "cjk": "日本語",
        "rtl": "שלום",
        "ключ": "значение",
        "escapes": 'tab\tquote"backslash\\newline\n',
        "bmp_edge": "\uffff\ue000",
    }
    metadata = {"note": "naïve café", "🔑": "✓"}
    body = {"events": [{"type": "Unicode", "data": data, "metadata": metadata}]}
    as_utf8 = json.dumps(body, ensure_ascii=False).encode()
    as_escapes = json.dumps(body, ensure_ascii=True).encode()  # \ud83c\udf0d pairs
    assert (await post_raw(client, "Text-1", as_utf8)).status_code == 201
    assert (await post_raw(client, "Text-1", as_escapes)).status_code == 201
    for version in (1, 2):
        event = (await client.get(f"/streams/Text-1/{version}")).json()
        assert (event["data"], event["metadata"]) == (data, metadata)
    charset = await client.post(
        "/streams/Text-1",
        content=as_utf8,
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert charset.status_code == 201, charset.text
