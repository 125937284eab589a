"""API keys: issuing, checking and revoking the bearer keys integrators call with.

A key is shown once, when issued; storage keeps only its SHA-256. The authorizer finds
the record by the digest's prefix and compares the full digest in constant time.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

from chalicelib import logs
from chalicelib.clock import Clock
from chalicelib.domain.api_keys import (
    KEY_PREFIX,
    MAX_KEY_LENGTH,
    MIN_KEY_LENGTH,
    NAME_RE,
    KeyInfo,
    StoredKey,
    bearer_key,
    digest,
    key_id_of,
)
from chalicelib.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from chalicelib.ports import ApiKeyRepository, KeyTaken

log = logs.get_logger("auth")


@dataclass(frozen=True)
class IssuedKey:
    key: str  # the only time the value exists outside the caller's hands
    info: KeyInfo


class ApiKeyService:
    def __init__(self, clock: Clock, keys: ApiKeyRepository) -> None:
        self._clock = clock
        self._keys = keys

    def issue(self, name: str, key: str | None = None) -> IssuedKey:
        """Register ``key`` (or a new random one) under ``name``."""
        if not NAME_RE.fullmatch(name):
            raise ValidationFailed("Invalid key name.", {"name": "1-100 letters, digits, ' .:@-_'"})
        value = key if key is not None else KEY_PREFIX + secrets.token_urlsafe(32)
        if bearer_key(f"Bearer {value}") is None:
            raise ValidationFailed(
                "Invalid key.",
                {"key": f"{MIN_KEY_LENGTH}-{MAX_KEY_LENGTH} printable characters, no spaces"},
            )
        key_hash = digest(value)
        info = KeyInfo(
            key_id=key_id_of(key_hash), name=name, created_at=self._clock(), revoked=False
        )
        try:
            self._keys.add(StoredKey(info=info, key_hash=key_hash))
        except KeyTaken:
            raise Conflict("This key is already registered.") from None
        log.info("api key issued", extra={"key_id": info.key_id, "key_name": name})
        return IssuedKey(key=value, info=info)

    def ensure(self, name: str, key: str) -> KeyInfo:
        """Register ``key`` unless it already is (the local stack's development key)."""
        existing = self._keys.get(key_id_of(digest(key)))
        if existing is not None and not existing.info.revoked:
            return existing.info
        return self.issue(name, key).info

    def authenticate(self, header: str | None) -> KeyInfo:
        """The key's record if ``header`` carries a live key; Unauthorized otherwise.

        The error never says whether the key was missing, malformed, unknown or revoked.
        """
        key = bearer_key(header)
        if key is None:
            raise Unauthorized("A valid API key is required.")
        key_hash = digest(key)
        record = self._keys.get(key_id_of(key_hash))
        # compare_digest even on a miss, so both paths cost the same.
        stored = record.key_hash if record is not None else "0" * len(key_hash)
        if not hmac.compare_digest(stored, key_hash) or record is None or record.info.revoked:
            log.info("api key rejected", extra={"key_id": key_id_of(key_hash)})
            raise Unauthorized("A valid API key is required.")
        return record.info

    def revoke(self, key_id: str) -> KeyInfo:
        record = self._keys.revoke(key_id, self._clock())
        if record is None:
            raise NotFound(f"API key {key_id} does not exist.")
        log.info("api key revoked", extra={"key_id": key_id})
        return record.info

    def list(self) -> Iterator[KeyInfo]:
        return (record.info for record in self._keys.all())
