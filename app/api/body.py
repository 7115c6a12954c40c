"""Request bodies: media type, size limits, strict JSON, and the append request.

Bodies are parsed by orjson when that is safe (see `_fast_parse`); anything unusual
goes to the strict parser, which is the standard library's, tightened: repeated
member names are a 400 (they cannot be stored faithfully), NaN / Infinity and numbers
beyond a double's range are 422, as are strings that PostgreSQL's jsonb cannot hold (U+0000, lone
surrogates). Integers survive exactly up to Python's digit limit (4300 by default);
longer ones are 422 rather than a 500. Problems found inside `data` and
`metadata` are reported with JSON pointers, all of them, not only the first.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from starlette.requests import Request

from app.api.problems import (
    MalformedJsonError,
    Problems,
    UnsupportedMediaTypeError,
    ValidationProblemError,
)
from app.api.query_body import parse_query
from app.domain.errors import LimitExceededError
from app.domain.names import (
    MAX_POSITION,
    MAX_TAGS,
    MAX_VERSION,
    NAME_RULE,
    STREAM_ID_RULE,
    TAG_RULE,
    TYPE_RE,
    TYPE_RULE,
    is_name,
    is_tag,
)
from app.domain.types import (
    Condition,
    Expectation,
    ExpectedKind,
    ExpectedVersion,
    LogFilter,
    NewEvent,
    Track,
    new_event_ids,
)
from app.live.wire import dumps_text, keep_floats
from app.settings import Settings

UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
EVENT_MEMBERS = {"id", "type", "data", "metadata", "tags"}


class _Invalid:
    """Stands in the parsed tree for a number JSON cannot carry faithfully."""

    def __init__(self, why: str) -> None:
        self.why = why


def require_json(request: Request) -> None:
    content_type = request.headers.get("content-type")
    if content_type is None:
        raise UnsupportedMediaTypeError("send the body with Content-Type: application/json")
    media, _, params = content_type.partition(";")
    charset_ok = all(
        p.strip().lower() in ("", "charset=utf-8", 'charset="utf-8"') for p in params.split(";")
    )
    if media.strip().lower() != "application/json" or not charset_ok:
        raise UnsupportedMediaTypeError(
            f"Content-Type {content_type!r} is not supported; use application/json (UTF-8)"
        )


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, refusing it as soon as it passes `max_bytes`."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise body_too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def body_too_large(max_bytes: int) -> LimitExceededError:
    return LimitExceededError(
        "max_body_bytes", max_bytes, f"the request body is larger than {max_bytes} bytes"
    )


# Containers above an event's data: the body, its events array, the event.
_ABOVE_DATA = 3
# Beyond this a float parsed from an integer may have lost digits (orjson turns
# integers beyond 64 bits into doubles).
_EXACT_LIMIT = 2.0**63


def _fast_parse(raw: bytes, max_depth: int) -> Any | None:
    """orjson's parse of a body that needs none of the strict parser's care, or None.

    orjson refuses (and so sends to the strict parser, for its precise messages)
    malformed JSON, invalid UTF-8, lone surrogates, NaN, Infinity and numbers beyond a
    double. What it would let through is screened here:
    - U+0000: the raw body has no \\u0000 escape (a raw one is malformed JSON);
    - integers beyond 64 bits: no float of integral value at or above 2^63;
    - nesting deeper than the limit;
    - repeated member names, which orjson merges silently. Every member has one colon
      outside strings, so the body's colons are its members plus the colons inside
      its strings, and orjson's compact re-encoding of the parsed tree has exactly as
      many colons only when no member was merged away (escaped colons, \\u003a, are
      the one way to hide a colon from the count: such bodies take the strict path).
    """
    if b"\\u0000" in raw or b"\\u003" in raw:
        return None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(body) is not dict or not _plain(body, max_depth + _ABOVE_DATA):
        return None
    if orjson.dumps(body).count(b":") != raw.count(b":"):
        return None
    return body


def _plain(value: Any, depth_left: int) -> bool:
    """True when `value` nests at most `depth_left` containers deep and holds no float
    that may stand for a longer integer."""
    if depth_left == 0:
        return False
    for item in value.values() if type(value) is dict else value:
        kind = type(item)
        if kind is dict or kind is list:
            if not _plain(item, depth_left - 1):
                return False
        elif kind is float and abs(item) >= _EXACT_LIMIT and item.is_integer():
            return False
    return True


def _encode(value: Any) -> str:
    # Only for values from _fast_parse: every integer fits in 64 bits.
    return keep_floats(orjson.dumps(value).decode(), value)


def parse_json(raw: bytes) -> Any:
    """Strict JSON. Raises MalformedJsonError (400) or ValidationProblemError (422)."""
    if not raw.strip():
        raise MalformedJsonError("the request body is empty; send a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedJsonError(f"the body is not UTF-8 (byte {e.start})") from e
    try:
        return json.loads(
            text,
            object_pairs_hook=_object,
            parse_constant=lambda name: _Invalid(f"{name} is not a JSON number"),
            parse_float=_float,
            parse_int=_int,
        )
    except json.JSONDecodeError as e:
        raise MalformedJsonError(f"the body is not valid JSON: {e.msg} at offset {e.pos}") from e
    except RecursionError as e:
        raise ValidationProblemError(
            [{"pointer": "", "detail": "the body is nested too deeply"}]
        ) from e


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise MalformedJsonError(
                    f"member name {key!r} is repeated in one object; it cannot be stored faithfully"
                )
            seen.add(key)
    return result


def _int(text: str) -> int | _Invalid:
    try:
        return int(text)
    except ValueError:  # more digits than sys.get_int_max_str_digits() allows
        return _Invalid(f"an integer of {len(text.lstrip('-'))} digits is too long to accept")


def _float(text: str) -> float | _Invalid:
    value = float(text)
    return value if math.isfinite(value) else _Invalid(f"{text} is out of range for a number")


def pointer(*parts: str | int) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def json_problems(value: Any, at: str, max_depth: int, depth: int = 0) -> list[dict[str, str]]:
    """Everything in a parsed value that cannot be stored: bad numbers, U+0000, lone
    surrogates, nesting deeper than `max_depth`."""
    if isinstance(value, _Invalid):
        return [{"pointer": at, "detail": value.why}]
    if isinstance(value, str):
        return _string_problems(value, at)
    if not isinstance(value, dict | list):
        return []
    if depth + 1 > max_depth:
        return [{"pointer": at, "detail": f"nested deeper than {max_depth} levels"}]
    found = Problems()
    if isinstance(value, dict):
        for key, item in value.items():
            found += _string_problems(key, at + pointer(key), "member name ")
            found += json_problems(item, at + pointer(key), max_depth, depth + 1)
    else:
        for i, item in enumerate(value):
            found += json_problems(item, at + pointer(i), max_depth, depth + 1)
    return found


def _string_problems(text: str, at: str, what: str = "") -> list[dict[str, str]]:
    if "\x00" in text:
        return [{"pointer": at, "detail": f"{what}contains U+0000, which cannot be stored"}]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return [{"pointer": at, "detail": f"{what}contains a lone surrogate (not Unicode text)"}]
    return []


# Bodies larger than this are parsed in a worker thread: the strict parser takes
# seconds over a few MiB of unusual JSON, and the event loop must serve on meanwhile.
INLINE_PARSE_BYTES = 256 * 1024


def parse_append(raw: bytes, settings: Settings) -> list[NewEvent]:
    """The events of an append request body, validated and with JSON encoded once."""
    body, items, screened = _events_body(raw, settings)
    # Plain lists while the body is well-formed (the common case, on the hot path);
    # Problems, bounded, once the JSON walk of a strict-parsed body finds something.
    problems = [{"pointer": pointer(k), "detail": "unknown member"} for k in body if k != "events"]
    if not items:
        problems.append({"pointer": "/events", "detail": "send at least one event"})
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        found = _event_problems(item, i, seen, settings, screened)
        if found:
            problems = _joined(problems, found)
    if problems:
        raise ValidationProblemError(problems)
    encode = _encode if screened else dumps_text
    ids = iter(new_event_ids(sum(1 for item in items if "id" not in item)))
    return [_new_event(item, i, settings, encode, ids) for i, item in enumerate(items)]


def _events_body(raw: bytes, settings: Settings) -> tuple[dict[str, Any], list[Any], bool]:
    """The parsed body of an append, its events array, and whether the fast parse
    screened it (nothing in it that json_problems would report)."""
    body = _fast_parse(raw, settings.max_json_depth)
    screened = body is not None
    if body is None:
        body = parse_json(raw)
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        detail = "the body must be an object with an events array"
        raise ValidationProblemError([{"pointer": "/events", "detail": detail}])
    items: list[Any] = body["events"]
    if len(items) > settings.max_events_per_append:
        raise LimitExceededError(
            "max_events_per_append",
            settings.max_events_per_append,
            f"{len(items)} events in one append; at most {settings.max_events_per_append}",
        )
    return body, items, screened


ACROSS_MEMBERS = {"events", "expect", "condition", "track"}


def parse_append_across(
    raw: bytes, settings: Settings
) -> tuple[list[tuple[str, NewEvent]], list[Expectation], Condition | None, Track | None]:
    """The events (each with its stream), expectations and condition of a body of
    POST /events (contract section 11), every problem reported with its pointer."""
    body, items, screened = _events_body(raw, settings)
    problems: list[dict[str, str]] = [
        {"pointer": pointer(k), "detail": "unknown member"} for k in body if k not in ACROSS_MEMBERS
    ]
    track, found_track = _track(body["track"]) if "track" in body else (None, [])
    problems = _joined(problems, found_track)
    if not items and "track" not in body:
        problems.append({"pointer": "/events", "detail": "send at least one event (or a track)"})
    seen: dict[str, int] = {}
    members = EVENT_MEMBERS | {"stream_id"}
    for i, item in enumerate(items):
        found = _event_problems(item, i, seen, settings, screened, members)
        if isinstance(item, dict):
            stream_id = item.get("stream_id")
            if not isinstance(stream_id, str) or not is_name(stream_id):
                found.append(
                    {"pointer": pointer("events", i, "stream_id"), "detail": STREAM_ID_RULE}
                )
        if found:
            problems = _joined(problems, found)
    expect, found = _expectations(body.get("expect", []), settings.max_events_per_append)
    problems = _joined(problems, found)
    condition = None
    if "condition" in body:
        condition, found = _condition(body["condition"], settings.max_name_length)
        problems = _joined(problems, found)
    if problems:
        raise ValidationProblemError(problems)
    encode = _encode if screened else dumps_text
    ids = iter(new_event_ids(sum(1 for item in items if "id" not in item)))
    events = [
        (item["stream_id"], _new_event(item, i, settings, encode, ids))
        for i, item in enumerate(items)
    ]
    return events, expect, condition, track


def _track(value: Any) -> tuple[Track | None, list[dict[str, str]]]:
    if not isinstance(value, dict):
        return None, [{"pointer": "/track", "detail": 'must be {"name", "position"}'}]
    found = [
        {"pointer": f"/track/{k}", "detail": "unknown member"}
        for k in value
        if k not in ("name", "position")
    ]
    name, position = value.get("name"), value.get("position")
    if not isinstance(name, str) or not is_name(name):
        found.append({"pointer": "/track/name", "detail": "required: " + NAME_RULE})
    if type(position) is not int or not 0 <= position <= MAX_POSITION:
        found.append({"pointer": "/track/position", "detail": "required: a position >= 0"})
    if found:
        return None, found
    assert isinstance(name, str) and isinstance(position, int)
    return Track(name, position), []


def _expectations(value: Any, most: int) -> tuple[list[Expectation], list[dict[str, str]]]:
    if not isinstance(value, list) or len(value) > most:
        detail = f"must be an array of at most {most} expectations"
        return [], [{"pointer": "/expect", "detail": detail}]
    found: list[dict[str, str]] = []
    expect: list[Expectation] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        at = pointer("expect", i)
        if not isinstance(item, dict):
            found.append({"pointer": at, "detail": 'must be {"stream_id", "version"}'})
            continue
        found += [
            {"pointer": f"{at}/{k}", "detail": "unknown member"}
            for k in item
            if k not in ("stream_id", "version")
        ]
        stream_id, version = item.get("stream_id"), item.get("version")
        if not isinstance(stream_id, str) or not is_name(stream_id):
            found.append({"pointer": f"{at}/stream_id", "detail": STREAM_ID_RULE})
        elif stream_id in seen:
            found.append({"pointer": f"{at}/stream_id", "detail": "one expectation per stream"})
        else:
            seen.add(stream_id)
        if version == "exists":
            expected = ExpectedVersion(ExpectedKind.EXISTS, raw='"exists"')
        elif type(version) is int and 0 <= version <= MAX_VERSION:
            kind = ExpectedKind.NO_STREAM if version == 0 else ExpectedKind.EXACT
            expected = ExpectedVersion(kind, frozenset({version}), str(version))
        else:
            detail = 'required: a version (0: no events) or "exists"'
            found.append({"pointer": f"{at}/version", "detail": detail})
            continue
        if isinstance(stream_id, str):
            expect.append(Expectation(stream_id, expected, version))
    return expect, found


def _condition(value: Any, max_name: int) -> tuple[Condition | None, list[dict[str, str]]]:
    if not isinstance(value, dict):
        detail = 'must be {"fail_if_events_match": query, "after": position}'
        return None, [{"pointer": "/condition", "detail": detail}]
    found = [
        {"pointer": f"/condition/{k}", "detail": "unknown member"}
        for k in value
        if k not in ("fail_if_events_match", "after")
    ]
    if "fail_if_events_match" not in value:
        detail = "required: the query of events that must not exist"
        found.append({"pointer": "/condition/fail_if_events_match", "detail": detail})
        where = LogFilter()
    else:
        at = "/condition/fail_if_events_match"
        where, problems = parse_query(value["fail_if_events_match"], at, max_name)
        found += problems
    after = value.get("after")
    if after is not None and (type(after) is not int or not 0 <= after <= MAX_POSITION):
        found.append({"pointer": "/condition/after", "detail": "must be a position >= 0"})
    return (None if found else Condition(where, after)), found


def _event_problems(
    item: Any,
    i: int,
    seen: dict[str, int],
    settings: Settings,
    screened: bool,
    members: set[str] = EVENT_MEMBERS,
) -> list[dict[str, str]]:
    if not isinstance(item, dict):
        return [{"pointer": pointer("events", i), "detail": "an event must be an object"}]
    found = [
        {"pointer": pointer("events", i, k), "detail": "unknown member"}
        for k in item
        if k not in members
    ]
    event_id = item.get("id")
    if "id" in item:
        if not isinstance(event_id, str) or not UUID_RE.fullmatch(event_id):
            found.append({"pointer": pointer("events", i, "id"), "detail": "must be a UUID string"})
        elif (key := event_id.lower()) in seen:
            detail = f"repeats the id of /events/{seen[key]}; ids must be unique"
            found.append({"pointer": pointer("events", i, "id"), "detail": detail})
        else:
            seen[key] = i
    event_type = item.get("type")
    if not isinstance(event_type, str) or not TYPE_RE.fullmatch(event_type):
        found.append(
            {
                "pointer": pointer("events", i, "type"),
                "detail": TYPE_RULE,
            }
        )
    elif len(event_type) > settings.max_name_length:
        detail = f"longer than {settings.max_name_length} characters"
        found.append({"pointer": pointer("events", i, "type"), "detail": detail})
    if "data" not in item:
        found.append({"pointer": pointer("events", i, "data"), "detail": "required"})
    elif not screened:
        at = pointer("events", i, "data")
        found = _joined(found, json_problems(item["data"], at, settings.max_json_depth))
    if "metadata" in item:
        if not isinstance(item["metadata"], dict):
            detail = "must be an object"
            found.append({"pointer": pointer("events", i, "metadata"), "detail": detail})
        elif not screened:
            at = pointer("events", i, "metadata")
            found = _joined(found, json_problems(item["metadata"], at, settings.max_json_depth))
    if "tags" in item:
        found = _joined(found, tag_problems(item["tags"], pointer("events", i, "tags")))
    return found


def tag_problems(tags: Any, at: str) -> list[dict[str, str]]:
    """What is wrong with an event's `tags` (contract section 1): an array of at most
    MAX_TAGS distinct tags."""
    if not isinstance(tags, list):
        return [{"pointer": at, "detail": "must be an array of strings"}]
    if len(tags) > MAX_TAGS:
        return [{"pointer": at, "detail": f"{len(tags)} tags; at most {MAX_TAGS}"}]
    found: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    for j, tag in enumerate(tags):
        if not isinstance(tag, str) or not is_tag(tag):
            found.append({"pointer": f"{at}/{j}", "detail": TAG_RULE})
        elif _string_problems(tag, f"{at}/{j}"):
            found.extend(_string_problems(tag, f"{at}/{j}"))
        elif tag in seen:
            detail = f"repeats the tag at {at}/{seen[tag]}; tags of one event are distinct"
            found.append({"pointer": f"{at}/{j}", "detail": detail})
        else:
            seen[tag] = j
    return found


def _joined(found: list[dict[str, str]], more: list[dict[str, str]]) -> list[dict[str, str]]:
    """`found` and `more` in one list, bounded (a Problems) when either is."""
    if not more:
        return found
    if isinstance(found, Problems) or isinstance(more, Problems):
        joined = found if isinstance(found, Problems) else Problems(found)
        joined += more
        return joined
    found.extend(more)
    return found


def _new_event(
    item: dict[str, Any],
    i: int,
    settings: Settings,
    encode: Callable[[Any], str],
    server_ids: Iterator[str],
) -> NewEvent:
    data = encode(item["data"])
    metadata = encode(item.get("metadata", {}))
    size = len(data) + len(metadata)
    if not (data.isascii() and metadata.isascii()):
        size = len(data.encode()) + len(metadata.encode())
    if size > settings.max_event_bytes:
        raise LimitExceededError(
            "max_event_bytes",
            settings.max_event_bytes,
            f"/events/{i}: data and metadata take {size} bytes; at most {settings.max_event_bytes}",
        )
    given = item.get("id")
    tags = item.get("tags")
    return NewEvent(
        id=given.lower() if given else next(server_ids),
        type=item["type"],
        data=data,
        metadata=metadata,
        client_id=given is not None,
        tags=tuple(tags) if tags else (),
    )
