"""Client directory storage: atomic writes that keep phones unique."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, replace
from datetime import datetime

from pynamodb.exceptions import TransactWriteError
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from chalicelib import logs
from chalicelib.domain.audience import CountKey, deltas
from chalicelib.domain.clients import Client, ClientProfile
from chalicelib.domain.imports import ImportStamp
from chalicelib.ports import Page, PhoneTaken, StaleClient
from chalicelib.storage.ids import next_id, take_ids
from chalicelib.storage.models import (
    ClientModel,
    CounterModel,
    PhoneModel,
    tag_key,
    transaction_connection,
)
from chalicelib.storage.pagination import KeySchema, decode_cursor, key_from, take_page

CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailed"
log = logs.get_logger("clients")

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


# A transaction DynamoDB cancelled only because another held one of its items at that
# moment (every client write shares the audience counters, ``_count``) is tried again
# after a short random pause, growing, this many times in all.
CONFLICT_ATTEMPTS = 4
CONFLICT_PAUSE_SECONDS = 0.02
TRANSACTION_CONFLICT = "TransactionConflict"


def _conflict_only(error: TransactWriteError) -> bool:
    codes = {reason.code for reason in error.cancellation_reasons if reason is not None}
    return TRANSACTION_CONFLICT in codes and CONDITIONAL_CHECK_FAILED not in codes


def transact(write: Callable[[TransactWrite], None]) -> None:
    """One transaction of the items ``write`` adds, retried on conflicts alone."""
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            with TransactWrite(connection=transaction_connection()) as tx:
                write(tx)
            return
        except TransactWriteError as error:
            if attempt == CONFLICT_ATTEMPTS or not _conflict_only(error):
                raise
            log.info("client write met another, tried again", extra={"attempt": attempt})
        time.sleep(random.uniform(0, CONFLICT_PAUSE_SECONDS * 2**attempt))  # noqa: S311


def _count(tx: TransactWrite, before: ClientProfile | None, after: ClientProfile | None) -> None:
    """Move the audience counters (``chalicelib/domain/audience.py``) in the client's own
    transaction, after its items: so they are exact whenever the transaction commits.
    A write that keeps the code and the tag moves none."""
    for key, delta in deltas(before, after).items():
        tx.update(CounterModel(counter_name(key)), actions=[CounterModel.value.add(delta)])


def _stamp(item: ClientModel, stamp: ImportStamp) -> None:
    item.import_id = stamp.import_id
    item.import_line = stamp.line
    item.import_created = stamp.created
    if stamp.deferred:
        item.import_before = json.dumps(list(stamp.before or ()), ensure_ascii=False)


def _stamp_of(item: ClientModel) -> ImportStamp | None:
    if item.import_id is None or item.import_line is None:
        return None
    before: tuple[str, str] | None = None
    if item.import_before:
        replaced = json.loads(item.import_before)
        before = (str(replaced[0]), str(replaced[1])) if replaced else None
    return ImportStamp(
        int(item.import_id),
        int(item.import_line),
        bool(item.import_created),
        before=before,
        deferred=item.import_before is not None,
    )


def _counted_here(stamp: ImportStamp | None) -> bool:
    """A write moves the audience counters in its own transaction unless an import's
    checkpoint counts it (``ImportStamp``)."""
    return stamp is None or not stamp.deferred


# A transaction holds 100 items: a new client is two (the client, its phone's claim).
CREATES_PER_TRANSACTION = 50


def _new_item(
    client_id: int, profile: ClientProfile, now: datetime, stamp: ImportStamp | None
) -> ClientModel:
    created = ClientModel(
        id=client_id,
        phone=profile.phone,
        code=profile.code,
        tag=profile.tag,
        tag_key=tag_key(profile.tag),
        utc=profile.utc,
        created_at=now,
        updated_at=now,
    )
    if stamp is not None:
        _stamp(created, stamp)
    return created


def _add_new(tx: TransactWrite, item: ClientModel, profile: ClientProfile) -> None:
    """A new client and its phone's claim, each only if free."""
    tx.save(item, condition=ClientModel.id.does_not_exist())
    tx.save(
        PhoneModel(profile.phone, client_id=int(item.id)),
        condition=PhoneModel.phone.does_not_exist(),
    )


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

    def new_ids(self, count: int) -> range:
        """Client ids for ``create``, taken together (one write for a chunk's new rows)."""
        return take_ids("clients", count)

    def create_many(
        self, rows: Sequence[tuple[ClientProfile, ImportStamp, int]], now: datetime
    ) -> bool:
        """Import rows creating clients (each with its stamp and one of ``new_ids``), in
        one transaction: False, nothing written, if any phone is taken meanwhile (the
        caller applies them one by one). Their counters are the checkpoint's."""
        if len(rows) > CREATES_PER_TRANSACTION:
            raise ValueError("too many rows for one transaction")

        def write(tx: TransactWrite) -> None:
            for profile, stamp, client_id in rows:
                _add_new(tx, _new_item(client_id, profile, now, stamp), profile)

        try:
            transact(write)
        except TransactWriteError as error:
            if any(_failed_items(error)):
                return False
            raise
        return True

    def create(
        self,
        profile: ClientProfile,
        now: datetime,
        stamp: ImportStamp | None = None,
        client_id: int | None = None,
    ) -> Client:
        """``stamp``: the import row that creates it, written with it (see by_phones).
        ``client_id``: one of ``new_ids`` not used yet (else one is taken here)."""
        new_id = next_id("clients") if client_id is None else client_id

        def item() -> ClientModel:
            return _new_item(new_id, profile, now, stamp)

        def write(tx: TransactWrite) -> None:
            _add_new(tx, item(), profile)
            if _counted_here(stamp):
                _count(tx, None, profile)

        try:
            transact(write)
        except TransactWriteError as error:
            if any(_failed_items(error)):
                raise PhoneTaken from None
            raise
        created = item()
        created.version = 1  # what the save stored (a stored item's first version)
        return client_of(created)

    def update(
        self,
        client: Client,
        profile: ClientProfile,
        now: datetime,
        stamp: ImportStamp | None = None,
    ) -> Client:
        """One optimistic attempt; a phone change moves the phone's claim in the same
        transaction. ``stamp``: the import row that writes it, written with it."""
        new_phone = profile.phone != client.phone

        def write(tx: TransactWrite) -> None:
            # Built anew for each attempt: PynamoDB adds the version's action to the list.
            actions: list[Action] = [
                ClientModel.phone.set(profile.phone),
                ClientModel.code.set(profile.code),
                ClientModel.tag.set(profile.tag),
                ClientModel.tag_key.set(tag_key(profile.tag)),
                ClientModel.utc.set(profile.utc),
                ClientModel.updated_at.set(now),
            ]
            if stamp is not None:
                actions += [
                    ClientModel.import_id.set(stamp.import_id),
                    ClientModel.import_line.set(stamp.line),
                    ClientModel.import_created.set(stamp.created),
                ]
                if stamp.deferred:
                    replaced = json.dumps(list(stamp.before or ()), ensure_ascii=False)
                    actions.append(ClientModel.import_before.set(replaced))
                else:
                    actions.append(ClientModel.import_before.remove())
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
            if _counted_here(stamp):
                _count(tx, client, profile)

        try:
            transact(write)
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

        def write(tx: TransactWrite) -> None:
            tx.delete(
                PhoneModel(client.phone, client_id=client.id),
                condition=PhoneModel.client_id == client.id,
            )
            tx.delete(_item(client), condition=ClientModel.id.exists())
            _count(tx, client, None)

        try:
            transact(write)
        except TransactWriteError as error:
            if any(_failed_items(error)):
                raise StaleClient from None
            raise

    def by_phones(self, phones: Iterable[str]) -> dict[str, tuple[Client, ImportStamp | None]]:
        """The clients holding these phones (at most 100), with the import stamp each
        carries: two consistent BatchGetItem requests, phones then clients."""
        wanted = sorted(set(phones))
        owners = {
            item.phone: int(item.client_id)
            for item in PhoneModel.batch_get(wanted, consistent_read=True)
        }
        found: dict[str, tuple[Client, ImportStamp | None]] = {}
        if not owners:
            return found
        for item in ClientModel.batch_get(sorted(set(owners.values())), consistent_read=True):
            if owners.get(item.phone) != int(item.id):
                continue  # the phone moved between the two reads: as if not found
            found[item.phone] = (client_of(item), _stamp_of(item))
        return found

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
