"""Client directory storage: atomic writes that keep phones unique."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pynamodb.exceptions import TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.transactions import TransactWrite

from chalicelib.errors import Conflict, NotFound
from chalicelib.storage.ids import next_id
from chalicelib.storage.models import (
    ClientModel,
    PhoneModel,
    tag_key,
    transaction_connection,
)
from chalicelib.storage.pagination import KeySchema, decode_cursor, key_from, take_page

CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailed"
# How often an update is re-applied when another writer changed the client meanwhile.
UPDATE_ATTEMPTS = 3

TABLE_KEY: KeySchema = {"id": "N"}
CODE_KEY: KeySchema = {"id": "N", "code": "S"}
TAG_KEY: KeySchema = {"id": "N", "tag_key": "S"}


@dataclass(frozen=True)
class ClientPage:
    items: list[ClientModel]
    next: str | None


def _failed_items(error: TransactWriteError) -> list[bool]:
    return [
        reason is not None and reason.code == CONDITIONAL_CHECK_FAILED
        for reason in error.cancellation_reasons
    ]


def get(client_id: int) -> ClientModel | None:
    try:
        return ClientModel.get(client_id, consistent_read=True)
    except ClientModel.DoesNotExist:
        return None


def create(*, phone: str, code: str, tag: str, utc: str, now: datetime) -> ClientModel:
    client = ClientModel(
        id=next_id("clients"),
        phone=phone,
        code=code,
        tag=tag,
        tag_key=tag_key(tag),
        utc=utc,
        created_at=now,
        updated_at=now,
    )
    try:
        with TransactWrite(connection=transaction_connection()) as tx:
            tx.save(client, condition=ClientModel.id.does_not_exist())
            tx.save(
                PhoneModel(phone, client_id=client.id),
                condition=PhoneModel.phone.does_not_exist(),
            )
    except TransactWriteError as error:
        if any(_failed_items(error)):
            raise _phone_taken() from None
        raise
    return client


def update(client_id: int, changes: Mapping[str, Any], *, now: datetime) -> ClientModel:
    """Apply a partial update; a phone change moves the phone claim in the same transaction."""
    for _ in range(UPDATE_ATTEMPTS):
        current = get(client_id)
        if current is None:
            raise _not_found(client_id)
        wanted = {k: v for k, v in changes.items() if getattr(current, k) != v}
        if not wanted:
            return current
        if _try_update(current, wanted, now):
            return current
    raise Conflict("The client was changed by another request; try again.")


def _try_update(current: ClientModel, wanted: Mapping[str, Any], now: datetime) -> bool:
    """One optimistic attempt; False when the client changed under us."""
    old_phone = current.phone
    actions = [getattr(ClientModel, k).set(v) for k, v in wanted.items()]
    if "tag" in wanted:
        actions.append(ClientModel.tag_key.set(tag_key(wanted["tag"])))
    actions.append(ClientModel.updated_at.set(now))
    # The client must still hold the values we read: otherwise re-read and retry.
    unchanged: Condition = (ClientModel.id.exists()) & (
        ClientModel.updated_at == current.updated_at
    )
    new_phone = wanted.get("phone")
    try:
        with TransactWrite(connection=transaction_connection()) as tx:
            if new_phone is not None:
                tx.delete(
                    PhoneModel(old_phone, client_id=current.id),
                    condition=PhoneModel.client_id == current.id,
                )
                tx.save(
                    PhoneModel(new_phone, client_id=current.id),
                    condition=PhoneModel.phone.does_not_exist(),
                )
            tx.update(current, actions=actions, condition=unchanged)
    except TransactWriteError as error:
        failed = _failed_items(error)
        if new_phone is not None and len(failed) == 3 and failed[1] and not failed[2]:
            raise _phone_taken() from None
        if any(failed):
            return False
        raise
    for key, value in wanted.items():
        setattr(current, key, value)
    current.updated_at = now
    return True


def delete(client_id: int) -> None:
    for _ in range(UPDATE_ATTEMPTS):
        current = get(client_id)
        if current is None:
            raise _not_found(client_id)
        try:
            with TransactWrite(connection=transaction_connection()) as tx:
                tx.delete(
                    PhoneModel(current.phone, client_id=current.id),
                    condition=PhoneModel.client_id == current.id,
                )
                tx.delete(current, condition=ClientModel.phone == current.phone)
        except TransactWriteError as error:
            if any(_failed_items(error)):
                continue
            raise
        return
    raise Conflict("The client was changed by another request; try again.")


def list_page(*, code: str | None, tag: str | None, limit: int, cursor: str | None) -> ClientPage:
    """One page of clients, served by the index that matches the filters."""
    results: Iterable[ClientModel]
    fetch = limit + 1  # one extra tells whether another page exists
    if code is not None:
        start = decode_cursor(cursor, CODE_KEY, {"code": code})
        condition = ClientModel.tag_key == tag_key(tag) if tag is not None else None
        results = ClientModel.by_code.query(
            code, filter_condition=condition, last_evaluated_key=start, limit=fetch
        )
        schema = CODE_KEY
    elif tag is not None:
        start = decode_cursor(cursor, TAG_KEY, {"tag_key": tag_key(tag)})
        results = ClientModel.by_tag.query(tag_key(tag), last_evaluated_key=start, limit=fetch)
        schema = TAG_KEY
    else:
        # Listing everything is the point here, so a paged scan is the right tool.
        start = decode_cursor(cursor, TABLE_KEY)
        results = ClientModel.scan(last_evaluated_key=start, limit=fetch)
        schema = TABLE_KEY
    items, next_cursor = take_page(results, limit, lambda c: key_from(c, schema))
    return ClientPage(items=items, next=next_cursor)


def _not_found(client_id: int) -> NotFound:
    return NotFound(f"Client {client_id} does not exist.")


def _phone_taken() -> Conflict:
    return Conflict("Another client already has this phone.")
