"""API keys: how a bearer key is read, named and kept (as a digest, never the key)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

KEY_PREFIX = "nk_"
MAX_KEY_LENGTH = 512
MIN_KEY_LENGTH = 16
_BEARER_RE = re.compile(r"[Bb]earer ([\x21-\x7e]+)")
NAME_RE = re.compile(r"[\w .:@-]{1,100}")


@dataclass(frozen=True)
class KeyInfo:
    """What anyone may see of a key."""

    key_id: str
    name: str
    created_at: datetime
    revoked: bool


@dataclass(frozen=True)
class StoredKey:
    """A key as storage keeps it: its information and the SHA-256 of its value."""

    info: KeyInfo
    key_hash: str


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_id_of(key_hash: str) -> str:
    return key_hash[:32]


def bearer_key(header: str | None) -> str | None:
    """The key from ``Authorization: Bearer <key>``, or None when malformed."""
    if not header:
        return None
    match = _BEARER_RE.fullmatch(header.strip())
    if not match or not MIN_KEY_LENGTH <= len(match.group(1)) <= MAX_KEY_LENGTH:
        return None
    return match.group(1)
