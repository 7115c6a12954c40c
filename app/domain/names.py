"""The contract's names and bounds, defined once (contract sections 1 and 2). Every
check imports them: the routers' declared parameters, the body parsers, the append
fast path, the OpenAPI models and the store."""

from __future__ import annotations

import re

# Stream ids, categories and subscription names.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@~=-]*$"
NAME_CHARACTERS = "A-Z a-z 0-9 - _ . : @ ~ ="
# Event types.
TYPE_PATTERN = r"^[A-Za-z][A-Za-z0-9_.:-]*$"
TYPE_CHARACTERS = "A-Z a-z 0-9 _ . : -"
# The longest name or type the contract admits (the max_name_length setting may
# lower it for types and filters, never raise it).
MAX_NAME_LENGTH = 200
# Positions and versions are signed 64-bit integers in storage.
MAX_POSITION = 2**63 - 1
MAX_VERSION = MAX_POSITION

# Tags (v2): no whitespace and no control characters; at most MAX_TAGS per event.
TAG_PATTERN = r"^[^\s\x00-\x1f\x7f-\x9f]+$"
MAX_TAGS = 32

NAME_RE = re.compile(NAME_PATTERN)
TAG_RE = re.compile(TAG_PATTERN)
TYPE_RE = re.compile(TYPE_PATTERN)

NAME_RULE = (
    f"a name of 1 to {MAX_NAME_LENGTH} characters from {NAME_CHARACTERS}, "
    "starting with a letter or digit"
)
STREAM_ID_RULE = (
    f"must be 1 to {MAX_NAME_LENGTH} characters from {NAME_CHARACTERS}, "
    "starting with a letter or digit"
)
TYPE_RULE = (
    f"required: 1 to {MAX_NAME_LENGTH} characters, letters, digits and _ . : -, "
    "starting with a letter"
)


TAG_RULE = (
    f"a tag is 1 to {MAX_NAME_LENGTH} characters with no whitespace and no control characters"
)


def is_tag(text: str) -> bool:
    """A valid tag."""
    return len(text) <= MAX_NAME_LENGTH and TAG_RE.fullmatch(text) is not None


def is_name(text: str, max_length: int = MAX_NAME_LENGTH) -> bool:
    """A valid stream id, category or subscription name."""
    return len(text) <= max_length and NAME_RE.fullmatch(text) is not None


def is_type(text: str, max_length: int = MAX_NAME_LENGTH) -> bool:
    """A valid event type."""
    return len(text) <= max_length and TYPE_RE.fullmatch(text) is not None
