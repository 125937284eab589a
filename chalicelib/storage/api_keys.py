"""API key storage: digests only, never the key itself."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from pynamodb.exceptions import PutError, UpdateError

from chalicelib.domain.api_keys import KeyInfo, StoredKey
from chalicelib.ports import KeyTaken
from chalicelib.storage.models import ApiKeyModel

CONDITION_FAILED = "ConditionalCheckFailedException"


def _key(record: ApiKeyModel) -> StoredKey:
    info = KeyInfo(
        key_id=record.key_id,
        name=record.name,
        created_at=record.created_at,
        revoked=bool(record.revoked),
    )
    return StoredKey(info=info, key_hash=record.key_hash)


class DynamoApiKeys:
    """The api_keys table behind ``ApiKeyRepository`` (``chalicelib/ports.py``)."""

    def add(self, key: StoredKey) -> None:
        info = key.info
        record = ApiKeyModel(
            info.key_id,
            key_hash=key.key_hash,
            name=info.name,
            created_at=info.created_at,
            revoked=info.revoked,
        )
        try:
            record.save(condition=ApiKeyModel.key_id.does_not_exist())
        except PutError as error:
            if error.cause_response_code == CONDITION_FAILED:
                raise KeyTaken from None
            raise

    def get(self, key_id: str) -> StoredKey | None:
        try:
            return _key(ApiKeyModel.get(key_id, consistent_read=True))
        except ApiKeyModel.DoesNotExist:
            return None

    def revoke(self, key_id: str, now: datetime) -> StoredKey | None:
        record = ApiKeyModel(key_id)
        try:
            record.update(
                actions=[ApiKeyModel.revoked.set(True), ApiKeyModel.revoked_at.set(now)],
                condition=ApiKeyModel.key_id.exists(),
            )
        except UpdateError as error:
            if error.cause_response_code == CONDITION_FAILED:
                return None
            raise
        return _key(record)

    def all(self) -> Iterator[StoredKey]:
        # An operator's listing of every key: a scan is the point here.
        return (_key(record) for record in ApiKeyModel.scan())
