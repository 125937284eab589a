"""API keys: issuing, checking and revoking the bearer keys integrators call with.

A key is shown once, when issued; storage keeps only its SHA-256. The authorizer finds
the record by the digest's prefix and compares the full digest in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from chalicelib import logs
from chalicelib.clock import Clock
from chalicelib.errors import Unauthorized, ValidationFailed
from chalicelib.storage import api_keys as store
from chalicelib.storage.models import ApiKeyModel

log = logs.get_logger("auth")

KEY_PREFIX = "nk_"
MAX_KEY_LENGTH = 512
MIN_KEY_LENGTH = 16
_BEARER_RE = re.compile(r"[Bb]earer ([\x21-\x7e]+)")
_NAME_RE = re.compile(r"[\w .:@-]{1,100}")


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    name: str
    created_at: datetime
    revoked: bool


@dataclass(frozen=True)
class IssuedKey:
    key: str  # the only time the value exists outside the caller's hands
    info: KeyInfo


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


class ApiKeyService:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def issue(self, name: str, key: str | None = None) -> IssuedKey:
        """Register ``key`` (or a new random one) under ``name``."""
        if not _NAME_RE.fullmatch(name):
            raise ValidationFailed("Invalid key name.", {"name": "1-100 letters, digits, ' .:@-_'"})
        value = key if key is not None else KEY_PREFIX + secrets.token_urlsafe(32)
        if bearer_key(f"Bearer {value}") is None:
            raise ValidationFailed(
                "Invalid key.",
                {"key": f"{MIN_KEY_LENGTH}-{MAX_KEY_LENGTH} printable characters, no spaces"},
            )
        key_hash = digest(value)
        record = store.save(
            key_id=key_id_of(key_hash), key_hash=key_hash, name=name, now=self._clock()
        )
        log.info("api key issued", extra={"key_id": record.key_id, "key_name": name})
        return IssuedKey(key=value, info=_info(record))

    def ensure(self, name: str, key: str) -> KeyInfo:
        """Register ``key`` unless it already is (the local stack's development key)."""
        existing = store.get(key_id_of(digest(key)))
        if existing is not None and not existing.revoked:
            return _info(existing)
        return self.issue(name, key).info

    def authenticate(self, header: str | None) -> KeyInfo:
        """The key's record if ``header`` carries a live key; Unauthorized otherwise.

        The error never says whether the key was missing, malformed, unknown or revoked.
        """
        key = bearer_key(header)
        if key is None:
            raise Unauthorized("A valid API key is required.")
        key_hash = digest(key)
        record = store.get(key_id_of(key_hash))
        # compare_digest even on a miss, so both paths cost the same.
        stored = record.key_hash if record is not None else "0" * len(key_hash)
        if not hmac.compare_digest(stored, key_hash) or record is None or record.revoked:
            log.info("api key rejected", extra={"key_id": key_id_of(key_hash)})
            raise Unauthorized("A valid API key is required.")
        return _info(record)

    def revoke(self, key_id: str) -> KeyInfo:
        record = store.revoke(key_id, now=self._clock())
        log.info("api key revoked", extra={"key_id": key_id})
        return _info(record)

    def list(self) -> Iterator[KeyInfo]:
        return (_info(record) for record in store.all_keys())


def _info(record: ApiKeyModel) -> KeyInfo:
    return KeyInfo(
        key_id=record.key_id,
        name=record.name,
        created_at=record.created_at,
        revoked=bool(record.revoked),
    )
