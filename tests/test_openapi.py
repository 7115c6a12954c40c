"""The OpenAPI document: committed file == served document, and what SDKs rely on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

COMMITTED = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


async def test_committed_document_matches_served(client: httpx.AsyncClient) -> None:
    served = (await client.get("/openapi.json")).json()
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert served == committed, "openapi/openapi.json is stale: run `make openapi`"


async def test_every_operation_has_id_tag_and_problem_responses(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(ids) == len(set(ids))
    for method, path, operation in operations(document):
        assert len(operation["tags"]) == 1, (method, path)
        for status, response in operation["responses"].items():
            if int(status) >= 400 and not path.startswith("/health"):
                content = response["content"]
                assert list(content) == ["application/problem+json"], (method, path, status)
                schema = content["application/problem+json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Problem"}
    assert "HTTPValidationError" not in document["components"]["schemas"]


async def test_preconditions_and_body_are_declared(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    append = document["paths"]["/streams/{stream_id}"]["post"]
    headers = {p["name"] for p in append["parameters"] if p["in"] == "header"}
    assert headers == {"If-Match", "If-None-Match"}
    body = append["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/AppendRequest"}
    schemas = document["components"]["schemas"]
    assert {"AppendRequest", "EventIn", "Problem", "ErrorItem"} <= set(schemas)
    read = document["paths"]["/streams/{stream_id}"]["get"]
    assert "If-None-Match" in {p["name"] for p in read["parameters"]}
