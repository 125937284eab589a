"""Opaque page cursors: a DynamoDB key, JSON-encoded and base64url'd.

A cursor is only ever decoded into the exact key shape the query expects, so a forged
or damaged cursor is a 400, never a DynamoDB error.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable, Mapping
from itertools import islice
from typing import Any, TypeVar

from chalicelib.errors import ValidationFailed

KeySchema = Mapping[str, str]  # attribute name -> DynamoDB type ("N" or "S")
DynamoKey = dict[str, dict[str, str]]
_NUMBER = re.compile(r"[0-9]{1,20}")


def encode_cursor(key: DynamoKey) -> str:
    raw = json.dumps(key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, schema: KeySchema) -> DynamoKey | None:
    if cursor is None or cursor == "":
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise _invalid() from None
    if not _matches(key, schema):
        raise _invalid()
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
        if not isinstance(text, str) or (kind == "N" and not _NUMBER.fullmatch(text)):
            return False
        if len(text) > 2048:
            return False
    return True


def _invalid() -> ValidationFailed:
    return ValidationFailed("The cursor is not valid.", {"cursor": "not a cursor from this list"})
