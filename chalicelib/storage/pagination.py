"""Opaque page cursors: a DynamoDB key, JSON-encoded and base64url'd.

A cursor is only ever decoded into the exact key shape the query expects, with values
DynamoDB accepts and, where the query fixes a key attribute (the task of a message
list, the code of a code-filtered list), that very value: a forged or damaged cursor
raises ``InvalidCursor`` (a 400 at the edge), never a DynamoDB ``ValidationException``
(moto does not check all of these).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable, Mapping
from itertools import islice
from typing import Any, TypeVar

from chalicelib import safejson
from chalicelib.errors import InvalidCursor

KeySchema = Mapping[str, str]  # attribute name -> DynamoDB type ("N" or "S")
DynamoKey = dict[str, dict[str, str]]
# Numbers are ids and epoch milliseconds: canonical, non-negative, at most 2^63-1.
_NUMBER = re.compile(r"0|[1-9][0-9]{0,18}")
MAX_NUMBER = 2**63 - 1
# DynamoDB caps a partition key at 2048 bytes and a sort key at 1024; no key of ours
# comes near either, so the smaller bound holds for every string attribute.
MAX_STRING_BYTES = 1024
# Base64 of the longest key a list hands out (a 100-character code, JSON-escaped), with room.
MAX_CURSOR_CHARS = 2048
# {"attribute": {"N": "1"}}: two levels.
_KEY_DEPTH = 2


def encode_cursor(key: DynamoKey) -> str:
    raw = json.dumps(key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(
    cursor: str | None, schema: KeySchema, fixed: Mapping[str, str] | None = None
) -> DynamoKey | None:
    """The key a cursor holds, checked against ``schema`` (name -> type).

    ``fixed`` names the attributes the query pins (its partition key, an equality on the
    sort key) and their values as DynamoDB strings: a cursor from another partition or
    index is refused, as DynamoDB would refuse it as a start key.
    """
    if cursor is None or cursor == "":
        return None
    if len(cursor) > MAX_CURSOR_CHARS:
        raise InvalidCursor
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = safejson.loads(base64.urlsafe_b64decode(padded.encode("ascii")), max_depth=_KEY_DEPTH)
    except (ValueError, binascii.Error):  # UnicodeError is a ValueError
        raise InvalidCursor from None
    if not _matches(key, schema):
        raise InvalidCursor
    for name, value in (fixed or {}).items():
        if key[name][schema[name]] != value:
            raise InvalidCursor
    return dict(key)


T = TypeVar("T")


def take_page(
    results: Iterable[T], limit: int, key_of: Callable[[T], DynamoKey]
) -> tuple[list[T], str | None]:
    """The first ``limit`` results and the cursor after them (None on the last page).

    ``results`` must be able to yield one item more than ``limit``: that extra item is
    how a full last page is told apart from a page with more after it.
    """
    items = list(islice(results, limit + 1))
    if len(items) <= limit:
        return items, None
    items = items[:limit]
    return items, encode_cursor(key_of(items[-1]))


def key_from(item: Any, schema: KeySchema) -> DynamoKey:
    """The DynamoDB key of a model instance for the given key schema."""
    return {name: {kind: str(getattr(item, name))} for name, kind in schema.items()}


def _matches(key: Any, schema: KeySchema) -> bool:
    if not isinstance(key, dict) or set(key) != set(schema):
        return False
    for name, kind in schema.items():
        value = key[name]
        if not isinstance(value, dict) or list(value) != [kind]:
            return False
        text = value[kind]
        if not isinstance(text, str) or not _valid(kind, text):
            return False
    return True


def _valid(kind: str, text: str) -> bool:
    if kind == "N":
        return bool(_NUMBER.fullmatch(text)) and int(text) <= MAX_NUMBER
    try:
        size = len(text.encode("utf-8"))  # a lone surrogate cannot be sent at all
    except UnicodeEncodeError:
        return False
    return 0 < size <= MAX_STRING_BYTES
