"""Every numeric parameter, header and body member refuses a number of thousands of
digits with a 422 (or the precondition's 400) naming it, never a 500."""

from __future__ import annotations

import httpx
import pytest

from tests.api import JSON, append_ok, assert_validation

HUGE = "9" * 5000
JUST_OVER = str(2**63)  # one past the largest position


@pytest.fixture
async def seeded(client: httpx.AsyncClient) -> httpx.AsyncClient:
    await append_ok(client, "Order-1", {"type": "Placed", "data": {}})
    assert (await client.put("/subscriptions/billing", json={})).status_code == 201
    return client


QUERY = [
    ("/events", "after"),
    ("/events", "limit"),
    ("/events", "wait"),
    ("/events/live", "after"),
    ("/streams/Order-1", "from"),
    ("/streams/Order-1", "limit"),
    ("/streams", "limit"),
    ("/subscriptions", "limit"),
    ("/subscriptions/billing/events", "limit"),
    ("/subscriptions/billing/events", "wait"),
]
PATH = [("/events/{n}", "position"), ("/streams/Order-1/{n}", "version")]
LAST_EVENT_ID = ["/events/live", "/subscriptions/billing/live"]
BODY = [
    ("/subscriptions/billing/checkpoint", '{{"position":{n}}}', "/position"),
    ("/streams/Order-1/snapshot", '{{"version":{n},"data":1}}', "/version"),
    ("/subscriptions/other", '{{"start":{n}}}', "/start"),
]


@pytest.mark.parametrize("number", [HUGE, JUST_OVER], ids=["5000-digits", "2^63"])
@pytest.mark.parametrize(("path", "parameter"), QUERY)
async def test_query_parameters(
    seeded: httpx.AsyncClient, path: str, parameter: str, number: str
) -> None:
    response = await seeded.get(path, params={parameter: number})
    assert_validation(response, ("parameter", parameter))


@pytest.mark.parametrize("number", [HUGE, JUST_OVER], ids=["5000-digits", "2^63"])
@pytest.mark.parametrize(("template", "parameter"), PATH)
async def test_path_parameters(
    seeded: httpx.AsyncClient, template: str, parameter: str, number: str
) -> None:
    response = await seeded.get(template.format(n=number))
    assert_validation(response, ("parameter", parameter))


@pytest.mark.parametrize("number", [HUGE, JUST_OVER, "-1", "1e3"], ids=str)
@pytest.mark.parametrize("path", LAST_EVENT_ID)
async def test_last_event_id(seeded: httpx.AsyncClient, path: str, number: str) -> None:
    response = await seeded.get(path, headers={"Last-Event-ID": number})
    assert_validation(response, ("parameter", "Last-Event-ID"))


@pytest.mark.parametrize("number", [HUGE, JUST_OVER], ids=["5000-digits", "2^63"])
@pytest.mark.parametrize(("path", "body", "pointer"), BODY)
async def test_body_members(
    seeded: httpx.AsyncClient, path: str, body: str, pointer: str, number: str
) -> None:
    response = await seeded.put(path, content=body.format(n=number), headers=JSON)
    assert_validation(response, ("pointer", pointer))


@pytest.mark.parametrize("header", ["If-Match", "If-None-Match"])
async def test_precondition_versions(seeded: httpx.AsyncClient, header: str) -> None:
    response = await seeded.get("/streams/Order-1", headers={header: f'"{HUGE}"'})
    if header == "If-Match":  # If-Match is not a read precondition: ignored
        assert response.status_code == 200
        return
    assert response.status_code == 400
    assert response.json()["type"] == "/problems/invalid-precondition"
    assert len(response.text) < 1000, "the detail repeats the 5000 digits"
