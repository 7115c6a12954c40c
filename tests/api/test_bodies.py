"""One definition per request body: the OpenAPI models (app/api/models.py) and the
parsers that serve the requests accept and refuse the same bodies, fed the models'
examples and the edge values of every member."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from app.api.body import parse_append
from app.api.models import AppendRequest, CheckpointIn, SnapshotIn, SubscriptionIn
from app.api.problems import MalformedJsonError, ValidationProblemError
from app.api.snapshots import parse_snapshot
from app.api.subscriptions import parse_checkpoint, parse_subscription
from app.domain.errors import LimitExceededError
from app.domain.names import MAX_POSITION
from app.settings import Settings

SETTINGS = Settings(database_url="sqlite:///unused.db")
UUID = "0b5e4c1e-8f5b-4d8e-9b61-3f5c2a1d7e90"
LONG_NAME = "a" * 200
TOO_LONG_NAME = "a" * 201


def event(**members: Any) -> dict[str, Any]:
    return {"type": "Placed", "data": {"n": 1}, **members}


APPEND_BODIES: list[Any] = [
    {"events": [event()]},
    {"events": [event(id=UUID)]},
    {"events": [event(id=UUID.upper())]},
    {"events": [event(id=UUID.replace("-", ""))]},
    {"events": [event(id="urn:uuid:" + UUID)]},
    {"events": [event(id=None)]},
    {"events": [event(id=7)]},
    {"events": [event(type="A")]},
    {"events": [event(type=LONG_NAME)]},
    {"events": [event(type=TOO_LONG_NAME)]},
    {"events": [event(type="1a")]},
    {"events": [event(type="a b")]},
    {"events": [event(type="a\n")]},
    {"events": [event(type=7)]},
    {"events": [{"type": "A"}]},
    {"events": [event(data=None)]},
    {"events": [event(data="text")]},
    {"events": [event(data=[1, 2])]},
    {"events": [event(metadata={"k": 1})]},
    {"events": [event(metadata=[])]},
    {"events": [event(metadata=None)]},
    {"events": [event(extra=1)]},
    {"events": [event(tags=[])]},
    {"events": [event(tags=["customer:c-7", "region:eu"])]},
    {"events": [event(tags=["t"] * 2)]},
    {"events": [event(tags=[f"t{i}" for i in range(32)])]},
    {"events": [event(tags=[f"t{i}" for i in range(33)])]},
    {"events": [event(tags=[LONG_NAME])]},
    {"events": [event(tags=[TOO_LONG_NAME])]},
    {"events": [event(tags=[""])]},
    {"events": [event(tags=["a b"])]},
    {"events": [event(tags=["a\tb"])]},
    {"events": [event(tags=["a\u0085b"])]},
    {"events": [event(tags=["é:ü"])]},
    {"events": [event(tags=[7])]},
    {"events": [event(tags="a")]},
    {"events": [event(tags=None)]},
    {"events": []},
    {"events": [event()] * 1000},
    {"events": [event()] * 1001},
    {"events": {}},
    {"events": [event()], "more": 1},
    {},
    [],
    "events",
]

SNAPSHOT_BODIES: list[Any] = [
    {"version": 1, "data": {}},
    {"version": MAX_POSITION, "data": None, "metadata": {"k": "v"}},
    {"version": MAX_POSITION + 1, "data": {}},
    {"version": 0, "data": {}},
    {"version": -1, "data": {}},
    {"version": 1.0, "data": {}},
    {"version": "1", "data": {}},
    {"version": True, "data": {}},
    {"version": 1},
    {"data": {}},
    {"version": 1, "data": {}, "metadata": []},
    {"version": 1, "data": {}, "other": 1},
    [],
]

SUBSCRIPTION_BODIES: list[Any] = [
    {},
    {"stream": ["Order-1"], "category": ["Order"], "type": ["Placed"]},
    {"stream": [LONG_NAME]},
    {"stream": [TOO_LONG_NAME]},
    {"stream": ["-bad"]},
    {"category": ["a b"]},
    {"type": ["1a"]},
    {"type": ["Placed.v2:x-y_z"]},
    {"stream": "Order-1"},
    {"stream": [1]},
    {"stream": ["s"] * 100},
    {"stream": ["s"] * 101},
    {"start": "beginning"},
    {"start": "end"},
    {"start": "middle"},
    {"start": 0},
    {"start": MAX_POSITION},
    {"start": MAX_POSITION + 1},
    {"start": -1},
    {"start": 1.0},
    {"start": "5"},
    {"start": None},
    {"other": 1},
    [],
]

CHECKPOINT_BODIES: list[Any] = [
    {"position": 0},
    {"position": MAX_POSITION},
    {"position": MAX_POSITION + 1},
    {"position": -1},
    {"position": 1.0},
    {"position": "1"},
    {"position": False},
    {"position": None},
    {},
    {"position": 1, "other": 2},
    [],
]

REFUSED = (ValidationProblemError, MalformedJsonError, LimitExceededError)


def model_accepts(model: type[BaseModel], raw: bytes) -> bool:
    try:
        model.model_validate_json(raw)
    except ValidationError:
        return False
    return True


def parser_accepts(parse: Callable[[bytes], object], raw: bytes) -> bool:
    try:
        parse(raw)
    except REFUSED:
        return False
    return True


def examples(model: type[BaseModel]) -> list[Any]:
    schema = model.model_json_schema()
    return list(schema.get("examples", []))


CASES = [
    (AppendRequest, lambda raw: parse_append(raw, SETTINGS), APPEND_BODIES),
    (SnapshotIn, lambda raw: parse_snapshot(raw, SETTINGS), SNAPSHOT_BODIES),
    (
        SubscriptionIn,
        lambda raw: parse_subscription(raw, SETTINGS.max_name_length),
        SUBSCRIPTION_BODIES,
    ),
    (CheckpointIn, parse_checkpoint, CHECKPOINT_BODIES),
]


@pytest.mark.parametrize(
    ("model", "parse", "bodies"), CASES, ids=[model.__name__ for model, _, _ in CASES]
)
def test_model_and_parser_agree(
    model: type[BaseModel], parse: Callable[[bytes], object], bodies: list[Any]
) -> None:
    disagree = []
    for body in [*examples(model), *bodies]:
        raw = json.dumps(body).encode()
        if model_accepts(model, raw) != parser_accepts(parse, raw):
            disagree.append((body if len(raw) < 200 else raw[:200], model_accepts(model, raw)))
    assert disagree == [], "(body, the model's verdict)"
