"""Queries in request bodies (contract section 11): `{"items": [item, ...]}`, an item
`{"types", "tags", "streams", "categories"}`, every member optional. Shared by
`POST /events/query`, subscriptions whose filter is a query, and (later) append
conditions. Every problem is reported with its JSON pointer."""

from __future__ import annotations

from typing import Any

from app.domain.names import MAX_TAGS, is_name, is_tag, is_type
from app.domain.types import LogFilter

MAX_ITEMS = 16
ITEM_MEMBERS = ("types", "tags", "streams", "categories")


def parse_query(value: Any, at: str, max_name: int) -> tuple[LogFilter, list[dict[str, str]]]:
    """The query `value` (found at pointer `at`) as a filter, and its problems."""
    if not isinstance(value, dict):
        return LogFilter(), [{"pointer": at, "detail": 'must be an object {"items": [...]}'}]
    found = [{"pointer": f"{at}/{k}", "detail": "unknown member"} for k in value if k != "items"]
    items = value.get("items")
    if not isinstance(items, list):
        found.append({"pointer": f"{at}/items", "detail": "required: an array of query items"})
        return LogFilter(), found
    if len(items) > MAX_ITEMS:
        found.append({"pointer": f"{at}/items", "detail": f"at most {MAX_ITEMS} items"})
        return LogFilter(), found
    parsed = []
    for i, item in enumerate(items):
        one, problems = _item(item, f"{at}/items/{i}", max_name)
        found.extend(problems)
        parsed.append(one)
    if found:
        return LogFilter(), found
    return query_of(parsed), []


def query_of(items: list[LogFilter]) -> LogFilter:
    """The filter of a query of these items: no item, or an item with no condition,
    matches every event; one item is that filter; several are OR'ed."""
    distinct = list(dict.fromkeys(items))
    if not distinct or any(item.is_empty for item in distinct):
        return LogFilter()
    if len(distinct) == 1:
        return distinct[0]
    return LogFilter(any_of=tuple(distinct))


def _item(item: Any, at: str, max_name: int) -> tuple[LogFilter, list[dict[str, str]]]:
    if not isinstance(item, dict):
        return LogFilter(), [{"pointer": at, "detail": "a query item must be an object"}]
    found = [
        {"pointer": f"{at}/{k}", "detail": "unknown member"} for k in item if k not in ITEM_MEMBERS
    ]
    lists: dict[str, tuple[str, ...]] = {}
    for member in ITEM_MEMBERS:
        values = item.get(member, [])
        if not isinstance(values, list) or len(values) > MAX_TAGS:
            detail = f"must be an array of at most {MAX_TAGS} strings"
            found.append({"pointer": f"{at}/{member}", "detail": detail})
            continue
        for j, text in enumerate(values):
            if not isinstance(text, str) or not _valid(member, text, max_name):
                found.append({"pointer": f"{at}/{member}/{j}", "detail": _RULES[member]})
        lists[member] = tuple(dict.fromkeys(v for v in values if isinstance(v, str)))
    if found:
        return LogFilter(), found
    where = LogFilter(
        streams=lists["streams"],
        categories=lists["categories"],
        types=lists["types"],
        tags=lists["tags"],
    )
    return where, []


_RULES = {
    "types": "not a valid event type",
    "tags": "not a valid tag (1 to 200 characters, no whitespace or control characters)",
    "streams": "not a valid stream id",
    "categories": "not a valid category",
}


def _valid(member: str, text: str, max_name: int) -> bool:
    if member == "types":
        return is_type(text, max_name)
    if member == "tags":
        return is_tag(text)
    return is_name(text, max_name)


def query_json(where: LogFilter) -> dict[str, Any]:
    """A filter as a query body (what GET shows of a stored query)."""
    return {
        "items": [
            {
                "types": list(item.types),
                "tags": list(item.tags),
                "streams": list(item.streams),
                "categories": list(item.categories),
            }
            for item in (where.items if not where.is_empty else ())
        ]
    }
