"""SSE frame injection: nothing a client writes can end an SSE line or message early.

Event types and stream ids cannot hold CR or LF (422 on the way in), and `data` with
line breaks and fake SSE fields inside its strings comes out as one escaped line of
JSON: one message per event, with exactly the fields the contract names. The stream is
read as raw bytes from a real server (the in-process transport buffers whole responses).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.support.servers import running_servers

BREAKS = ["\n", "\r", "\r\n"]
HOSTILE_STRINGS = [
    "\n\ndata: x",
    "\r\n\r\nevent: caught-up\r\nid: 999\r\ndata: {}\r\n\r\n",
    "a\rretry: 1\r",
    ": comment\n\nid: 7",
    "\u2028\u2029\u0085 are not SSE line breaks",
]


def hostile_data() -> dict[str, Any]:
    return {
        "text": HOSTILE_STRINGS,
        "\n\ndata: key": "member names too",
        "nested": [{"x": "\r\n\r\n"}, "\n"],
    }


@pytest.mark.parametrize("brk", BREAKS)
async def test_event_types_cannot_hold_line_breaks(client: httpx.AsyncClient, brk: str) -> None:
    body = {"events": [{"type": f"Placed{brk}event: caught-up", "data": 1}]}
    response = await client.post("/streams/Order-1", json=body)
    assert response.status_code == 422
    pointers = [e["pointer"] for e in response.json()["errors"]]
    assert pointers == ["/events/0/type"]
    assert (await client.get("/events")).json()["head"] == 0


@pytest.mark.parametrize("brk", BREAKS)
async def test_stream_ids_cannot_hold_line_breaks(client: httpx.AsyncClient, brk: str) -> None:
    path = "/streams/" + quote(f"Order-1{brk}data: x", safe="")
    response = await client.post(path, json={"events": [{"type": "Placed", "data": 1}]})
    assert response.status_code == 422
    assert [e["parameter"] for e in response.json()["errors"]] == ["stream_id"]
    assert (await client.get("/events")).json()["head"] == 0


@pytest.mark.parametrize("name", ["stream", "category", "type"])
async def test_live_filters_cannot_hold_line_breaks(client: httpx.AsyncClient, name: str) -> None:
    response = await client.get("/events/live", params={name: "A\n\ndata: x"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["parameter"] for e in response.json()["errors"]] == [name]


def raw_until_caught_up(url: str) -> bytes:
    """The raw bytes of /events/live?after=0 up to the end of the caught-up message."""
    received = b""
    with httpx.stream("GET", url + "/events/live", params={"after": 0}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for chunk in response.iter_bytes():
            received += chunk
            if re.search(rb"event: caught-up\n(?:[^\n]*\n)*?\n", received):
                return received
    raise AssertionError(f"the stream ended before caught-up: {received!r}")


def test_hostile_data_arrives_as_one_json_line_per_event(database_url: str, tmp_path: Path) -> None:
    sent = [hostile_data(), "\n\ndata: x", {"metadata-only": True}]
    with running_servers(database_url, tmp_path) as [server]:
        for i, data in enumerate(sent):
            event = {"type": "Placed", "data": data, "metadata": {"why\n\nid: 1": "\r\n"}}
            response = httpx.post(
                f"{server.url}/streams/Order-{i}", json={"events": [event]}, timeout=10
            )
            assert response.status_code == 201, response.text
        raw = raw_until_caught_up(server.url)

    assert b"\r" not in raw  # no CR anywhere: every line ends with the server's own LF
    blocks = [b for b in raw.split(b"\n\n") if b]
    assert blocks[0] == b"retry: 2000"
    messages = blocks[1:]
    assert len(messages) == len(sent) + 1  # one message per event, then caught-up
    for position, (block, data) in enumerate(zip(messages, sent, strict=False), start=1):
        lines = block.split(b"\n")
        assert [line.split(b":", 1)[0] for line in lines] == [b"id", b"data"], block
        assert lines[0] == b"id: %d" % position
        recorded = json.loads(lines[1].removeprefix(b"data: "))
        assert recorded["data"] == data
        assert recorded["metadata"] == {"why\n\nid: 1": "\r\n"}
        assert recorded["position"] == position
    assert messages[-1].split(b"\n")[0] == b"event: caught-up"
