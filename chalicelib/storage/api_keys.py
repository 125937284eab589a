"""API key storage: digests only, never the key itself."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from pynamodb.exceptions import PutError, UpdateError

from chalicelib.errors import Conflict, NotFound
from chalicelib.storage.models import ApiKeyModel


def save(*, key_id: str, key_hash: str, name: str, now: datetime) -> ApiKeyModel:
    record = ApiKeyModel(key_id, key_hash=key_hash, name=name, created_at=now, revoked=False)
    try:
        record.save(condition=ApiKeyModel.key_id.does_not_exist())
    except PutError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            raise Conflict("This key is already registered.") from None
        raise
    return record


def get(key_id: str) -> ApiKeyModel | None:
    try:
        return ApiKeyModel.get(key_id, consistent_read=True)
    except ApiKeyModel.DoesNotExist:
        return None


def revoke(key_id: str, *, now: datetime) -> ApiKeyModel:
    record = ApiKeyModel(key_id)
    try:
        record.update(
            actions=[ApiKeyModel.revoked.set(True), ApiKeyModel.revoked_at.set(now)],
            condition=ApiKeyModel.key_id.exists(),
        )
    except UpdateError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            raise NotFound(f"API key {key_id} does not exist.") from None
        raise
    return record


def all_keys() -> Iterator[ApiKeyModel]:
    # An operator's listing of every key: a scan is the point here.
    return ApiKeyModel.scan()
