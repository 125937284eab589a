"""Client directory storage: atomic writes that keep phones unique."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, replace
from datetime import datetime

from pynamodb.exceptions import TransactWriteError
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from chalicelib.domain.audience import CountKey, deltas
from chalicelib.domain.clients import Client, ClientProfile
from chalicelib.ports import Page, PhoneTaken, StaleClient
from chalicelib.storage.ids import next_id
from chalicelib.storage.models import (
    ClientModel,
    CounterModel,
    PhoneModel,
    tag_key,
    transaction_connection,
)
from chalicelib.storage.pagination import KeySchema, decode_cursor, key_from, take_page

CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailed"

TABLE_KEY: KeySchema = {"id": "N"}
CODE_KEY: KeySchema = {"id": "N", "code": "S"}
TAG_KEY: KeySchema = {"id": "N", "tag_key": "S"}


def _failed_items(error: TransactWriteError) -> list[bool]:
    return [
        reason is not None and reason.code == CONDITIONAL_CHECK_FAILED
        for reason in error.cancellation_reasons
    ]


# Audience counters: items of the counters table, ``value`` the count. A tag is named by
# its digest (fixed length, any tag fits a key), which also keeps a pair's name
# unambiguous: the digest first, then the code.
COUNTER_PREFIX = "aud#"


def counter_name(key: CountKey) -> str:
    if key.code is not None and key.tag is not None:
        return f"{COUNTER_PREFIX}pair#{tag_key(key.tag)}#{key.code}"
    if key.code is not None:
        return f"{COUNTER_PREFIX}code#{key.code}"
    if key.tag is not None:
        return f"{COUNTER_PREFIX}tag#{tag_key(key.tag)}"
    return f"{COUNTER_PREFIX}all"


def _count(tx: TransactWrite, before: ClientProfile | None, after: ClientProfile | None) -> None:
    """Move the audience counters (``chalicelib/domain/audience.py``) in the client's own
    transaction, after its items: so they are exact whenever the transaction commits.
    A write that keeps the code and the tag moves none."""
    for key, delta in deltas(before, after).items():
        tx.update(CounterModel(counter_name(key)), actions=[CounterModel.value.add(delta)])


def client_of(item: ClientModel) -> Client:
    return Client(
        id=int(item.id),
        phone=item.phone,
        code=item.code,
        tag=item.tag,
        utc=item.utc,
        created_at=item.created_at,
        updated_at=item.updated_at,
        version=item.version,
    )


def _item(client: Client) -> ClientModel:
    """A key-only item at the version ``client`` was read at: PynamoDB writes it only if
    the stored one is still that (see ``models``)."""
    item = ClientModel(client.id)
    if client.version is not None:
        item.version = client.version
    return item


class DynamoClients:
    """The clients and phones tables behind ``ClientRepository`` (``chalicelib/ports.py``)."""

    def get(self, client_id: int) -> Client | None:
        try:
            return client_of(ClientModel.get(client_id, consistent_read=True))
        except ClientModel.DoesNotExist:
            return None

    def create(self, profile: ClientProfile, now: datetime) -> Client:
        item = ClientModel(
            id=next_id("clients"),
            phone=profile.phone,
            code=profile.code,
            tag=profile.tag,
            tag_key=tag_key(profile.tag),
            utc=profile.utc,
            created_at=now,
            updated_at=now,
        )
        try:
            with TransactWrite(connection=transaction_connection()) as tx:
                tx.save(item, condition=ClientModel.id.does_not_exist())
                tx.save(
                    PhoneModel(item.phone, client_id=item.id),
                    condition=PhoneModel.phone.does_not_exist(),
                )
                _count(tx, None, profile)
        except TransactWriteError as error:
            if any(_failed_items(error)):
                raise PhoneTaken from None
            raise
        return client_of(item)

    def update(self, client: Client, profile: ClientProfile, now: datetime) -> Client:
        """One optimistic attempt; a phone change moves the phone's claim in the same
        transaction."""
        actions: list[Action] = [
            ClientModel.phone.set(profile.phone),
            ClientModel.code.set(profile.code),
            ClientModel.tag.set(profile.tag),
            ClientModel.tag_key.set(tag_key(profile.tag)),
            ClientModel.utc.set(profile.utc),
            ClientModel.updated_at.set(now),
        ]
        new_phone = profile.phone != client.phone
        try:
            with TransactWrite(connection=transaction_connection()) as tx:
                if new_phone:
                    tx.delete(
                        PhoneModel(client.phone, client_id=client.id),
                        condition=PhoneModel.client_id == client.id,
                    )
                    tx.save(
                        PhoneModel(profile.phone, client_id=client.id),
                        condition=PhoneModel.phone.does_not_exist(),
                    )
                tx.update(_item(client), actions=actions, condition=ClientModel.id.exists())
                # Conditional on the version read: ``client``'s code and tag are the stored.
                _count(tx, client, profile)
        except TransactWriteError as error:
            failed = _failed_items(error)
            # The items in order: the old phone, the new phone, the client, the counters.
            if new_phone and failed[1] and not failed[2]:
                raise PhoneTaken from None
            if any(failed):
                raise StaleClient from None
            raise
        version = (client.version or 0) + 1
        return replace(client, **asdict(profile), updated_at=now, version=version)

    def delete(self, client: Client) -> None:
        try:
            with TransactWrite(connection=transaction_connection()) as tx:
                tx.delete(
                    PhoneModel(client.phone, client_id=client.id),
                    condition=PhoneModel.client_id == client.id,
                )
                tx.delete(_item(client), condition=ClientModel.id.exists())
                _count(tx, client, None)
        except TransactWriteError as error:
            if any(_failed_items(error)):
                raise StaleClient from None
            raise

    def page(
        self, *, code: str | None, tag: str | None, limit: int, cursor: str | None
    ) -> Page[Client]:
        """Served by the index that matches the filters."""
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
        return Page([client_of(item) for item in items], next_cursor)
