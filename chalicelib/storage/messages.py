"""Message storage: creation, the transitions the lifecycle decides, and the counts.

The lifecycle (``chalicelib/domain/lifecycle.py``) decides every change; this module
writes it conditionally: on the message still being pending at the generation it was
read at, so a stale or concurrent actor changes nothing. A change of status runs in one
DynamoDB transaction with the matching change of its task's counts, so the counts stay
equal to a recount of the messages whatever the queue or the provider does.

Counts live on ``COUNTER_SHARDS`` counter items per task; counts add up whichever item
holds them, so each transaction puts its deltas on one shard picked at random and
concurrent senders rarely contend for an item. The stats add the shards up.
"""

from __future__ import annotations

import functools
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from chalicelib import logs
from chalicelib.domain.lifecycle import Change, MessageState, Phase
from chalicelib.domain.messages import Message, MessageStatus, message_id
from chalicelib.ports import (
    Counts,
    Created,
    Page,
    PartialWrite,
    Recipient,
    TaskGone,
    WaitingMessage,
)
from chalicelib.storage.models import (
    CounterModel,
    MessageModel,
    TaskModel,
    live_task_condition,
    transaction_connection,
)
from chalicelib.storage.pagination import KeySchema, decode_cursor, key_from, take_page

__all__ = ["DynamoMessages", "counts", "create_messages"]

log = logs.get_logger("storage.messages")

COUNTER_SHARDS = 8
MAX_TRANSACTION_ITEMS = 100
CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailed"
TRANSACTION_CONFLICT = "TransactionConflict"
CONFLICT_ATTEMPTS = 8
STATUSES = tuple(status.value for status in MessageStatus)

TABLE_KEY: KeySchema = {"task_id": "N", "client_id": "N"}
STATUS_KEY: KeySchema = {"task_id": "N", "client_id": "N", "status": "S"}
WAKE_KEY: KeySchema = {"task_id": "N", "client_id": "N", "wake_ms": "N"}


def counter_name(task_id: int, shard: int) -> str:
    return f"task#{task_id}#{shard}"


def any_shard() -> int:
    return random.randrange(COUNTER_SHARDS)  # noqa: S311 - load spreading, not secrecy


def _failed_items(error: TransactWriteError) -> list[str | None]:
    return [reason.code if reason else None for reason in error.cancellation_reasons]


def _transact(build: Callable[[TransactWrite], None]) -> None:
    """Run a transaction, retrying while it only lost a race for an item (conflict)."""
    for attempt in range(CONFLICT_ATTEMPTS):
        try:
            with TransactWrite(connection=transaction_connection()) as tx:
                build(tx)
            return
        except TransactWriteError as error:
            reasons = _failed_items(error)
            conflicted = TRANSACTION_CONFLICT in reasons
            if not conflicted or CONDITIONAL_CHECK_FAILED in reasons:
                raise
            if attempt == CONFLICT_ATTEMPTS - 1:
                raise
            time.sleep(random.uniform(0, 0.02 * 2**attempt))  # noqa: S311 - jitter


ItemT = TypeVar("ItemT")


def _write_what_applies(
    items: list[ItemT], build: Callable[[TransactWrite, list[ItemT]], None], *, first: int = 0
) -> tuple[list[ItemT], list[ItemT]]:
    """Run one transaction over ``items``; when some items' conditions fail, set those
    aside and run it again without them. ``first`` is the position of ``items[0]`` in the
    transaction (after any checks ``build`` adds before the items); a failed check
    outside the items is raised. Returns (written, refused)."""
    remaining, refused = list(items), []
    while remaining:
        try:
            _transact(lambda tx, chunk=remaining: build(tx, chunk))  # type: ignore[misc]
        except TransactWriteError as error:
            reasons = _failed_items(error)
            failed = {
                i - first for i, code in enumerate(reasons) if code == CONDITIONAL_CHECK_FAILED
            }
            if not failed or any(not 0 <= i < len(remaining) for i in failed):
                raise
            refused += [item for i, item in enumerate(remaining) if i in failed]
            remaining = [item for i, item in enumerate(remaining) if i not in failed]
            continue
        break
    return remaining, refused


def _count_actions(changes: dict[str, int]) -> list[Any]:
    return [getattr(CounterModel, name).add(delta) for name, delta in changes.items() if delta]


# Messages one transaction can hold beside the task check and the counter update.
MESSAGES_PER_TRANSACTION = MAX_TRANSACTION_ITEMS - 2


def create_messages(
    task_id: int, clients: Sequence[Recipient], now: datetime, expires_at: datetime | None = None
) -> Created:
    """One message per client, written with the counts, in as few transactions as fit;
    ``expires_at`` is their TTL stamp (in the same write: no write unit of its own)."""
    created: list[Recipient] = []
    existing: list[Recipient] = []
    for start in range(0, len(clients), MESSAGES_PER_TRANSACTION):
        chunk = clients[start : start + MESSAGES_PER_TRANSACTION]
        part = _create_chunk(task_id, chunk, now, expires_at)
        created += part.created
        existing += part.existing
    return Created(created=created, existing=existing)


def _create_chunk(
    task_id: int, clients: Sequence[Recipient], now: datetime, expires_at: datetime | None
) -> Created:
    """One transaction: the task check, the messages and the counts.

    A message that already exists (an interrupted run wrote it) makes the transaction
    fail on its condition; it is set aside and the rest is written again.
    """

    def build(tx: TransactWrite, page: list[Recipient]) -> None:
        tx.condition_check(
            TaskModel, task_id, condition=TaskModel.id.exists() & live_task_condition()
        )
        for client in page:
            tx.save(
                MessageModel(
                    task_id,
                    client.client_id,
                    id=message_id(task_id, client.client_id),
                    status=MessageStatus.PENDING.value,
                    phase=Phase.QUEUED.value,
                    created_at=now,
                    attempts=0,
                    job_gen=0,
                    phone=client.phone,
                    utc=client.utc,
                    expires_at=expires_at,
                ),
                condition=MessageModel.task_id.does_not_exist(),
            )
        count = len(page)
        counter = CounterModel(counter_name(task_id, any_shard()))
        tx.update(counter, actions=_count_actions({"total": count, "pending": count}))

    try:
        created, existing = _write_what_applies(list(clients), build, first=1)
    except TransactWriteError as error:
        if _failed_items(error)[:1] == [CONDITIONAL_CHECK_FAILED]:
            raise TaskGone from None
        raise
    return Created(created=created, existing=existing)


def _state(message: MessageModel) -> MessageState:
    status = MessageStatus(message.status)
    if message.phase:
        phase = Phase(message.phase)
    elif status is not MessageStatus.PENDING:
        phase = Phase.DONE
    else:  # written before phases were stored
        phase = Phase.CLAIMED if message.claimed_until is not None else Phase.QUEUED
        phase = Phase.WINDOW_WAIT if message.wake_ms is not None else phase
    return MessageState(
        client_id=int(message.client_id),
        status=status,
        phase=phase,
        generation=int(message.job_gen or 0),
        attempts=int(message.attempts or 0),
        claimed_until_ms=_int(message.claimed_until),
        wake_ms=_int(message.wake_ms),
        not_before_ms=_int(message.not_before_ms),
        last_error=message.last_error,
    )


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def _optional(attribute: Any, value: object) -> Action:
    action: Action = attribute.remove() if value is None else attribute.set(value)
    return action


def _actions(change: Change, now: datetime, expires_at: datetime | None = None) -> list[Action]:
    after = change.after
    actions: list[Action] = [
        MessageModel.phase.set(after.phase.value),
        _optional(MessageModel.claimed_until, after.claimed_until_ms),
        _optional(MessageModel.wake_ms, after.wake_ms),
        _optional(MessageModel.not_before_ms, after.not_before_ms),
    ]
    if not change.outcome_only:
        actions.append(MessageModel.job_gen.set(after.generation))
    if change.status_changed:
        actions.append(MessageModel.status.set(after.status.value))
    if after.attempts != change.before.attempts:
        actions.append(MessageModel.attempts.set(after.attempts))
    if after.last_error is not None and after.last_error != change.before.last_error:
        actions.append(MessageModel.last_error.set(after.last_error[:500]))
    if change.sent:
        actions.append(MessageModel.sent_at.set(now))
    if expires_at is not None:  # re-stamped from the task's end as the writer knows it
        actions.append(MessageModel.expires_at.set(expires_at))
    return actions


def _condition(change: Change) -> Any:
    still_pending = MessageModel.status == MessageStatus.PENDING.value
    if change.outcome_only:
        return still_pending
    return still_pending & (MessageModel.job_gen == change.expect_generation)


class DynamoMessages:
    """The messages table behind the engine's ``MessageRepository`` (``chalicelib/ports.py``)."""

    def create(
        self,
        task_id: int,
        recipients: Sequence[Recipient],
        now: datetime,
        *,
        expires_at: datetime | None = None,
    ) -> Created:
        return create_messages(task_id, recipients, now, expires_at)

    def states(self, task_id: int, client_ids: Sequence[int]) -> dict[int, MessageState]:
        keys = [(task_id, client_id) for client_id in set(client_ids)]
        found = MessageModel.batch_get(keys, consistent_read=True)
        return {int(message.client_id): _state(message) for message in found}

    def apply(
        self,
        task_id: int,
        changes: Sequence[Change],
        now: datetime,
        *,
        expires_at: datetime | None = None,
    ) -> set[int]:
        """A change of status goes in a transaction with the counts (as many per
        transaction as fit); any other change is one conditional update of one item.
        ``expires_at`` (the TTL stamp) rides on each write."""
        written: set[int] = set()
        moving = [change for change in changes if change.status_changed]
        staying = [change for change in changes if not change.status_changed]

        # Independent items: one request each, sent together (a batch's claims take the
        # time of one write, and half the write units of a transaction).
        def write(change: Change) -> bool | None:
            try:
                return _update(task_id, change, now, expires_at)
            except Exception:
                log.exception("message write failed", extra={"client_id": change.client_id})
                return None  # neither written nor refused: the caller retries it

        done = list(_updates().map(write, staying)) if len(staying) > 1 else map(write, staying)
        failed: set[int] = set()
        for change, ok in zip(staying, done, strict=True):
            if ok:
                written.add(change.client_id)
            elif ok is None:
                failed.add(change.client_id)
        for start in range(0, len(moving), MAX_TRANSACTION_ITEMS - 1):
            chunk = moving[start : start + MAX_TRANSACTION_ITEMS - 1]
            try:
                written |= _move_chunk(task_id, chunk, now, expires_at)
            except Exception:
                log.exception("message transaction failed")
                failed |= {change.client_id for change in chunk}
        if failed:
            raise PartialWrite(written, failed)
        return written

    def waiting(
        self, task_id: int, *, wake_before_ms: int | None, cursor: str | None, limit: int
    ) -> tuple[list[WaitingMessage], str | None]:
        condition = MessageModel.wake_ms <= wake_before_ms if wake_before_ms is not None else None
        results = MessageModel.parked_by_wake.query(
            task_id,
            condition,
            last_evaluated_key=decode_cursor(cursor, WAKE_KEY, {"task_id": str(task_id)}),
            limit=limit + 1,
        )
        items, after = take_page(results, limit, lambda m: key_from(m, WAKE_KEY))
        found = [
            WaitingMessage(
                _state(message),
                Recipient(int(message.client_id), str(message.phone), str(message.utc)),
            )
            for message in items
        ]
        return found, after

    def pending(
        self, task_id: int, *, cursor: str | None, limit: int
    ) -> tuple[list[MessageState], str | None]:
        results = MessageModel.by_task_status.query(
            task_id,
            MessageModel.status == MessageStatus.PENDING.value,
            last_evaluated_key=decode_cursor(
                cursor, STATUS_KEY, {"task_id": str(task_id), "status": MessageStatus.PENDING.value}
            ),
            limit=limit + 1,
        )
        items, after = take_page(results, limit, lambda m: key_from(m, STATUS_KEY))
        return [_state(message) for message in items], after

    def counts(self, task_ids: Sequence[int]) -> dict[int, Counts]:
        return counts(task_ids)

    def page(
        self, task_id: int, *, status: MessageStatus | None, limit: int, cursor: str | None
    ) -> Page[Message]:
        """An index key condition, never a filter: the cost is the page's, at any size."""
        if status is None:
            start = decode_cursor(cursor, TABLE_KEY, {"task_id": str(task_id)})
            results = MessageModel.query(task_id, last_evaluated_key=start, limit=limit + 1)
            schema = TABLE_KEY
        else:
            fixed = {"task_id": str(task_id), "status": status.value}
            results = MessageModel.by_task_status.query(
                task_id,
                MessageModel.status == status.value,
                last_evaluated_key=decode_cursor(cursor, STATUS_KEY, fixed),
                limit=limit + 1,
            )
            schema = STATUS_KEY
        items, next_cursor = take_page(results, limit, lambda m: key_from(m, schema))
        return Page([_message(item) for item in items], next_cursor)


@functools.cache
def _updates() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=10, thread_name_prefix="message-writes")


def _update(
    task_id: int, change: Change, now: datetime, expires_at: datetime | None = None
) -> bool:
    try:
        MessageModel(task_id, change.client_id).update(
            actions=_actions(change, now, expires_at), condition=_condition(change)
        )
    except UpdateError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def _move_chunk(
    task_id: int, changes: list[Change], now: datetime, expires_at: datetime | None = None
) -> set[int]:
    def build(tx: TransactWrite, chunk: list[Change]) -> None:
        for change in chunk:
            tx.update(
                MessageModel(task_id, change.client_id),
                actions=_actions(change, now, expires_at),
                condition=_condition(change),
            )
        deltas: Counter[str] = Counter()
        for change in chunk:
            deltas[change.before.status.value] -= 1
            deltas[change.after.status.value] += 1
        counter = CounterModel(counter_name(task_id, any_shard()))
        tx.update(counter, actions=_count_actions(dict(deltas)))

    moved, _ = _write_what_applies(changes, build)
    return {change.client_id for change in moved}


def counts(task_ids: Sequence[int]) -> dict[int, Counts]:
    """Counts for each task: ``COUNTER_SHARDS`` items a task, fetched in batches."""
    names = [
        counter_name(task_id, shard) for task_id in task_ids for shard in range(COUNTER_SHARDS)
    ]
    sums: dict[int, dict[str, int]] = {
        task_id: dict.fromkeys(("total", *STATUSES), 0) for task_id in task_ids
    }
    for item in CounterModel.batch_get(names, consistent_read=True):
        task_id = int(item.name.split("#")[1])
        for field in sums[task_id]:
            sums[task_id][field] += int(getattr(item, field) or 0)
    return {task_id: Counts(**values) for task_id, values in sums.items()}


def _message(item: MessageModel) -> Message:
    return Message(
        id=int(item.id),
        client_id=int(item.client_id),
        status=MessageStatus(item.status),
        created_at=item.created_at,
        sent_at=item.sent_at,
        attempts=int(item.attempts or 0),
        last_error=item.last_error,
    )
