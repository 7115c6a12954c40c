"""HTTP preconditions (RFC 9110 section 13) as expected versions and 304 checks.

Our entity tags are strong and carry the stream's version: `"5"`. An If-Match list
matches a version when one of its strong tags is exactly that number; weak tags never
match for If-Match (strong comparison) but do for If-None-Match (weak comparison).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.api.problems import InvalidPreconditionError
from app.domain.names import MAX_VERSION
from app.domain.types import ANY_VERSION, ExpectedKind, ExpectedVersion

# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE ; etagc = %x21 / %x23-7E / obs-text
_TAG = re.compile(r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"')
_VERSION = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True, slots=True)
class EntityTag:
    weak: bool
    opaque: str


def parse_tags(header: str, name: str) -> list[EntityTag] | None:
    """`*` gives None; otherwise the list of tags. Raises InvalidPreconditionError."""
    value = header.strip(" \t")
    if value == "*":
        return None
    tags: list[EntityTag] = []
    for element in value.split(","):
        item = element.strip(" \t")
        if not item:
            continue  # RFC 9110 list rule: empty elements are allowed and ignored
        match = _TAG.fullmatch(item)
        if match is None:
            raise InvalidPreconditionError(
                f"{name}: {item!r} is not an entity tag; send a quoted version such as "
                f'"3", a list of them, or *'
            )
        tags.append(EntityTag(weak=match.group(1) is not None, opaque=match.group(2)))
    if not tags:
        raise InvalidPreconditionError(f"{name} is empty; send a quoted version or *")
    return tags


def tag_version(tag: EntityTag, name: str) -> int | None:
    """The version a tag names, or None when it names none of ours."""
    if not _VERSION.fullmatch(tag.opaque):
        return None
    # Length first: int() refuses strings longer than Python's digit limit.
    if len(tag.opaque) > len(str(MAX_VERSION)) or int(tag.opaque) > MAX_VERSION:
        shown = tag.opaque if len(tag.opaque) <= 40 else tag.opaque[:40] + "..."
        raise InvalidPreconditionError(f"{name}: version {shown} is out of range")
    return int(tag.opaque)


def expected_version(if_match: str | None, if_none_match: str | None) -> ExpectedVersion:
    """The expected version of an append, from its precondition headers."""
    if if_match is not None and if_none_match is not None:
        raise InvalidPreconditionError("send either If-Match or If-None-Match, not both")
    if if_none_match is not None:
        if if_none_match.strip(" \t") != "*":
            raise InvalidPreconditionError(
                "If-None-Match on an append must be * (the stream must have no events)"
            )
        return ExpectedVersion(ExpectedKind.NO_STREAM, raw=if_none_match)
    if if_match is None:
        return ANY_VERSION
    tags = parse_tags(if_match, "If-Match")
    if tags is None:
        return ExpectedVersion(ExpectedKind.EXISTS, raw=if_match)
    versions = {v for t in tags if (v := tag_version(t, "If-Match")) is not None and not t.weak}
    if versions == {0}:
        return ExpectedVersion(ExpectedKind.NO_STREAM, raw=if_match)
    return ExpectedVersion(ExpectedKind.EXACT, frozenset(versions), raw=if_match)


def not_modified(if_none_match: str | None, version: int) -> bool:
    """True when a GET's If-None-Match matches the stream's current version."""
    if if_none_match is None:
        return False
    tags = parse_tags(if_none_match, "If-None-Match")
    if tags is None:
        return version > 0
    return any(tag_version(t, "If-None-Match") == version for t in tags)


def etag(version: int) -> str:
    return f'"{version}"'
