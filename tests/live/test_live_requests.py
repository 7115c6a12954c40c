"""A bad live request is a 4xx problem before any stream starts."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize(
    ("query", "headers", "parameter"),
    [
        ("after=-1", {}, "after"),
        ("after=9223372036854775808", {}, "after"),
        ("after=abc", {}, "after"),
        ("stream=$bad", {}, "stream"),
        ("type=1x", {}, "type"),
        ("", {"Last-Event-ID": "abc"}, "Last-Event-ID"),
        ("", {"Last-Event-ID": "-3"}, "Last-Event-ID"),
        ("", {"Last-Event-ID": "99999999999999999999"}, "Last-Event-ID"),
    ],
)
async def test_bad_start_or_filter_is_422_before_the_stream(
    client: httpx.AsyncClient, query: str, headers: dict[str, str], parameter: str
) -> None:
    response = await client.get(f"/events/live?{query}", headers=headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["type"], body["status"]) == ("/problems/validation-error", 422)
    assert [e.get("parameter") for e in body["errors"]] == [parameter]
