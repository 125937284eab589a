"""Message storage: creation, status transitions and the counts that move with them.

Every change of a message's status runs in one DynamoDB transaction with the matching
change of its task's counts, and every transition is conditional on the status it
leaves (``pending``): a repeated or concurrent attempt changes nothing, so the counts
stay equal to a recount of the messages whatever the queue or the provider does.

Counts live on ``COUNTER_SHARDS`` counter items per task; counts add up whichever item
holds them, so each transaction puts its deltas on one shard picked at random and
concurrent senders rarely contend for an item. The stats add the shards up.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from chalicelib.domain.messages import MessageStatus, message_id
from chalicelib.storage.models import (
    ClientModel,
    CounterModel,
    MessageModel,
    TaskModel,
    live_task_condition,
    transaction_connection,
)
from chalicelib.storage.pagination import KeySchema, decode_cursor, key_from, take_page

COUNTER_SHARDS = 8
MAX_TRANSACTION_ITEMS = 100
CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailed"
TRANSACTION_CONFLICT = "TransactionConflict"
CONFLICT_ATTEMPTS = 8
STATUSES = tuple(status.value for status in MessageStatus)

TABLE_KEY: KeySchema = {"task_id": "N", "client_id": "N"}
STATUS_KEY: KeySchema = {"task_id": "N", "client_id": "N", "status": "S"}


class TaskGone(Exception):
    """The task was deleted: nothing more may be created or sent for it."""


@dataclass(frozen=True)
class Counts:
    total: int = 0
    pending: int = 0
    sent: int = 0
    failed: int = 0
    expired: int = 0

    def by_status(self) -> dict[str, int]:
        return {status: getattr(self, status) for status in STATUSES}


@dataclass(frozen=True)
class CreatedPage:
    created: list[ClientModel]  # messages written now
    existing: list[ClientModel]  # messages an earlier (interrupted) run had written


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


def create_messages(task_id: int, clients: Sequence[ClientModel], now: datetime) -> CreatedPage:
    """One message per client, written with the counts, in as few transactions as fit."""
    created: list[ClientModel] = []
    existing: list[ClientModel] = []
    for start in range(0, len(clients), MESSAGES_PER_TRANSACTION):
        part = _create_chunk(task_id, clients[start : start + MESSAGES_PER_TRANSACTION], now)
        created += part.created
        existing += part.existing
    return CreatedPage(created=created, existing=existing)


def _create_chunk(task_id: int, clients: Sequence[ClientModel], now: datetime) -> CreatedPage:
    """One transaction: the task check, the messages and the counts.

    A message that already exists (an interrupted run wrote it) makes the transaction
    fail on its condition; it is set aside and the rest is written again.
    """

    def build(tx: TransactWrite, page: list[ClientModel]) -> None:
        tx.condition_check(
            TaskModel, task_id, condition=TaskModel.id.exists() & live_task_condition()
        )
        for client in page:
            tx.save(
                MessageModel(
                    task_id,
                    int(client.id),
                    id=message_id(task_id, int(client.id)),
                    status=MessageStatus.PENDING.value,
                    created_at=now,
                    attempts=0,
                    job_gen=0,
                    phone=client.phone,
                    utc=client.utc,
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
    return CreatedPage(created=created, existing=existing)


def get_many(task_id: int, client_ids: Iterable[int]) -> dict[int, MessageModel]:
    """Current state of these messages, read consistently (one call per 100)."""
    keys = [(task_id, client_id) for client_id in set(client_ids)]
    found = MessageModel.batch_get(keys, consistent_read=True)
    return {int(message.client_id): message for message in found}


@dataclass(frozen=True)
class Outcome:
    """A message's final status and what to record with it."""

    client_id: int
    status: MessageStatus
    attempts: int | None = None
    last_error: str | None = None


def finish(
    task_id: int,
    client_id: int,
    status: MessageStatus,
    *,
    now: datetime,
    attempts: int | None = None,
    last_error: str | None = None,
) -> bool:
    """pending -> a final status, with the counts; False if it was no longer pending."""
    done = finish_many(task_id, [Outcome(client_id, status, attempts, last_error)], now=now)
    return client_id in done


def finish_many(task_id: int, outcomes: Sequence[Outcome], *, now: datetime) -> set[int]:
    """Move many messages of one task from pending to their final status, with the counts,
    in as few transactions as fit; returns the client ids actually moved (a message that
    was no longer pending is left alone)."""
    moved: set[int] = set()
    for start in range(0, len(outcomes), MAX_TRANSACTION_ITEMS - 1):
        moved |= _finish_chunk(
            task_id, list(outcomes[start : start + MAX_TRANSACTION_ITEMS - 1]), now
        )
    return moved


def _finish_chunk(task_id: int, outcomes: list[Outcome], now: datetime) -> set[int]:
    def build(tx: TransactWrite, chunk: list[Outcome]) -> None:
        for outcome in chunk:
            actions: list[Action] = [
                MessageModel.status.set(outcome.status.value),
                MessageModel.wake_ms.remove(),
            ]
            if outcome.status is MessageStatus.SENT:
                actions.append(MessageModel.sent_at.set(now))
            if outcome.attempts is not None:
                actions.append(MessageModel.attempts.set(outcome.attempts))
            if outcome.last_error is not None:
                actions.append(MessageModel.last_error.set(outcome.last_error[:500]))
            tx.update(
                MessageModel(task_id, outcome.client_id),
                actions=actions,
                condition=MessageModel.status == MessageStatus.PENDING.value,
            )
        deltas = Counter(outcome.status.value for outcome in chunk)
        deltas["pending"] = -len(chunk)
        counter = CounterModel(counter_name(task_id, any_shard()))
        tx.update(counter, actions=_count_actions(dict(deltas)))

    moved, _ = _write_what_applies(outcomes, build)
    return {outcome.client_id for outcome in moved}


def claim_many(
    task_id: int, claims: Sequence[tuple[int, int]], *, now_ms: int, lease_ms: int
) -> set[int]:
    """Take hold of messages for a provider call, in one transaction per 100.

    ``claims`` are (client_id, generation) pairs; a claim succeeds while the message is
    pending, at that generation and not held by another sender, and moves it to the next
    generation: any other copy of the job, concurrent or later, then stops. Returns the
    client ids claimed.
    """

    def build(tx: TransactWrite, chunk: list[tuple[int, int]]) -> None:
        for client_id, generation in chunk:
            tx.update(
                MessageModel(task_id, client_id),
                actions=[
                    MessageModel.job_gen.set(generation + 1),
                    MessageModel.claimed_until.set(now_ms + lease_ms),
                ],
                condition=(MessageModel.status == MessageStatus.PENDING.value)
                & (MessageModel.job_gen == generation)
                & (
                    MessageModel.claimed_until.does_not_exist()
                    | (MessageModel.claimed_until <= now_ms)
                ),
            )

    claimed: set[int] = set()
    for start in range(0, len(claims), MAX_TRANSACTION_ITEMS):
        won, _ = _write_what_applies(list(claims[start : start + MAX_TRANSACTION_ITEMS]), build)
        claimed |= {client_id for client_id, _ in won}
    return claimed


def requeue(
    task_id: int,
    client_id: int,
    *,
    generation: int,
    attempts: int | None = None,
    last_error: str | None = None,
) -> bool:
    """Make the next job copy current (and record a failed attempt, if one was made).

    Conditional on the generation the job carried: of two copies of one job, only one
    wins and queues the next copy; the other is a stale duplicate and stops.
    """
    actions: list[Action] = [MessageModel.job_gen.set(generation + 1)]
    if attempts is not None:
        actions.append(MessageModel.attempts.set(attempts))
    if last_error is not None:
        actions.append(MessageModel.last_error.set(last_error[:500]))
    try:
        MessageModel(task_id, client_id).update(
            actions=actions,
            condition=(MessageModel.status == MessageStatus.PENDING.value)
            & (MessageModel.job_gen == generation),
        )
    except UpdateError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def park(task_id: int, client_id: int, *, generation: int, wake_ms: int) -> bool:
    """Hold a message outside its send window until ``wake_ms``, with no job queued.

    Cheaper than a queue delay for long waits: two writes whatever the wait, where a
    delayed job would come back every 15 minutes. The dispatcher wakes it.
    """
    try:
        MessageModel(task_id, client_id).update(
            actions=[MessageModel.wake_ms.set(wake_ms), MessageModel.job_gen.set(generation + 1)],
            condition=(MessageModel.status == MessageStatus.PENDING.value)
            & (MessageModel.job_gen == generation),
        )
    except UpdateError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def parked(task_id: int, *, wake_before_ms: int | None, limit: int) -> list[MessageModel]:
    """Parked messages of a task waking before ``wake_before_ms`` (all when None)."""
    condition = MessageModel.wake_ms <= wake_before_ms if wake_before_ms is not None else None
    return list(MessageModel.parked_by_wake.query(task_id, condition, limit=limit))


def unpark(message: MessageModel) -> bool:
    """Take a message out of the parking, making a new job copy current."""
    generation = int(message.job_gen or 0)
    try:
        message.update(
            actions=[MessageModel.wake_ms.remove(), MessageModel.job_gen.set(generation + 1)],
            condition=(MessageModel.status == MessageStatus.PENDING.value)
            & (MessageModel.job_gen == generation)
            & MessageModel.wake_ms.exists(),
        )
    except UpdateError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def expire_pending(task_id: int, now: datetime, limit: int = 98) -> int:
    """Expire up to ``limit`` pending messages of a task; returns how many changed."""
    pending = MessageModel.by_task_status.query(
        task_id, MessageModel.status == MessageStatus.PENDING.value, limit=limit
    )
    outcomes = [Outcome(int(message.client_id), MessageStatus.EXPIRED) for message in pending]
    if not outcomes:
        return 0
    return len(finish_many(task_id, outcomes, now=now))


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


@dataclass(frozen=True)
class MessagePage:
    items: list[MessageModel]
    next: str | None


def page(task_id: int, *, status: str | None, limit: int, cursor: str | None) -> MessagePage:
    """A task's messages, all or with one status (an index key condition, never a filter)."""
    if status is None:
        start = decode_cursor(cursor, TABLE_KEY)
        results = MessageModel.query(task_id, last_evaluated_key=start, limit=limit + 1)
        schema = TABLE_KEY
    else:
        start = decode_cursor(cursor, STATUS_KEY)
        results = MessageModel.by_task_status.query(
            task_id, MessageModel.status == status, last_evaluated_key=start, limit=limit + 1
        )
        schema = STATUS_KEY
    items, next_cursor = take_page(results, limit, lambda m: key_from(m, schema))
    return MessagePage(items=items, next=next_cursor)
