"""Message storage: creation, the transitions the lifecycle decides, and the counts.

The lifecycle (``chalicelib/domain/lifecycle.py``) decides every change; this module
writes it conditionally: on the message still being pending at the generation it was
read at, so a stale or concurrent actor changes nothing. Each message is its own
single-item write (a creation is a ``PutItem`` on the key being free, a change an
``UpdateItem`` on the state read): one write unit, where an item of a transaction costs
two, and nothing is bought by writing a batch's messages together, since each stands or
falls on its own condition.

The counts are not written here: the messages table's stream carries every change to
``chalicelib/services/counting.py``, which adds them to ``COUNTER_SHARDS`` counter items
per task exactly once each (``chalicelib/domain/counting.py``); the stats add the
shards up. They follow the messages a moment behind (the stream's delay), so what must
know now (is anything still pending?) reads the messages themselves.
"""

from __future__ import annotations

import contextvars
import functools
import json
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from pynamodb.exceptions import DoesNotExist, PutError, TransactWriteError, UpdateError
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from chalicelib import logs
from chalicelib.domain.counting import StatusChange, counter_slot, deltas, not_counted
from chalicelib.domain.lifecycle import Change, MessageState, Phase
from chalicelib.domain.messages import Message, MessageStatus, message_id
from chalicelib.domain.timeline import minute_counts, within_hours
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
    COUNTER_SLOTS,
    CounterModel,
    MessageModel,
    TaskModel,
    TimelineHourModel,
    counter_name,
    transaction_connection,
)
from chalicelib.storage.pagination import (
    KeySchema,
    decode_cursor,
    encode_cursor,
    key_from,
    take_page,
)
from chalicelib.storage.timeline import days_of, hour_actions, hour_name

__all__ = ["DynamoCountLedger", "DynamoMessages", "counter_name", "counts", "create_messages"]

log = logs.get_logger("storage.messages")

COUNTER_SHARDS = COUNTER_SLOTS
CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailedException"
# A transaction's cancellation reasons name these codes (without "Exception").
CANCELLED_BY_CONDITION = "ConditionalCheckFailed"
TRANSACTION_CONFLICT = "TransactionConflict"
# Hour items one counting write moves at most (a transaction holds up to 100 items; a
# stream batch spans seconds, so this only splits a backlog's batch).
TIMELINE_HOURS_PER_WRITE = 24
CONFLICT_ATTEMPTS = 8
STATUSES = tuple(status.value for status in MessageStatus)
# Items a filtered page of a task's messages reads at most (the stats' status filter,
# the sweep): a request's cost is bounded whatever the task's size.
MAX_ITEMS_READ = 1000

TABLE_KEY: KeySchema = {"task_id": "N", "client_id": "N"}
WAKE_KEY: KeySchema = {"task_id": "N", "client_id": "N", "wake_ms": "N"}


ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


@functools.cache
def _writes() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=10, thread_name_prefix="message-writes")


def _each(write: Callable[[ItemT], ResultT], items: Sequence[ItemT]) -> list[ResultT]:
    """One request per item, sent together (ten at a time): a page takes the time of a
    few writes. Each runs in a copy of the caller's context (its log fields)."""
    if len(items) <= 1:
        return [write(item) for item in items]
    context = contextvars.copy_context()
    return list(_writes().map(lambda item: context.copy().run(write, item), items))


def _conditional_failure(error: PutError | UpdateError) -> bool:
    return error.cause_response_code == CONDITIONAL_CHECK_FAILED


def create_messages(
    task_id: int, clients: Sequence[Recipient], now: datetime, expires_at: datetime | None = None
) -> Created:
    """One message per client, each a PutItem on its key being free; TaskGone if the task
    was deleted. A message that exists already (an interrupted run wrote it) is left as
    it is and reported apart. ``expires_at`` is their TTL stamp (in the same write: no
    write unit of its own)."""
    try:
        task = TaskModel.get(task_id, consistent_read=True, attributes_to_get=["deleted"])
    except DoesNotExist:
        raise TaskGone from None
    if task.deleted:
        raise TaskGone

    def put(client: Recipient) -> bool | None:
        message = MessageModel(
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
        )
        try:
            message.save(condition=MessageModel.task_id.does_not_exist())
        except PutError as error:
            if _conditional_failure(error):
                return False
            log.exception("message creation failed", extra={"client_id": client.client_id})
            return None
        return True

    outcomes = _each(put, list(clients))
    if any(outcome is None for outcome in outcomes):
        # The page is read again: what was written now is found then, as existing.
        raise RuntimeError("some messages of the page could not be written")
    created = [client for client, new in zip(clients, outcomes, strict=True) if new]
    existing = [client for client, new in zip(clients, outcomes, strict=True) if not new]
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
        """Each change is one conditional update of one item, sent together;
        ``expires_at`` (the TTL stamp) rides on each write."""

        def write(change: Change) -> bool | None:
            try:
                return _update(task_id, change, now, expires_at)
            except Exception:
                log.exception("message write failed", extra={"client_id": change.client_id})
                return None  # neither written nor refused: the caller retries it

        written: set[int] = set()
        failed: set[int] = set()
        for change, ok in zip(changes, _each(write, list(changes)), strict=True):
            if ok:
                written.add(change.client_id)
            elif ok is None:
                failed.add(change.client_id)
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
        items, after = _filtered_page(
            task_id, MessageStatus.PENDING, cursor=cursor, limit=limit, consistent=True
        )
        return [_state(message) for message in items], after

    def has_pending(self, task_id: int) -> bool:
        # Small pages first: while the counts trail a new task, its first page answers.
        cursor: str | None = None
        size = 25
        while True:
            items, cursor = _filtered_page(
                task_id, MessageStatus.PENDING, cursor=cursor, limit=size, consistent=True
            )
            if items:
                return True
            if cursor is None:
                return False
            size = min(size * 4, MAX_ITEMS_READ)

    def counts(self, task_ids: Sequence[int]) -> dict[int, Counts]:
        return counts(task_ids)

    def page(
        self, task_id: int, *, status: MessageStatus | None, limit: int, cursor: str | None
    ) -> Page[Message]:
        """By key, ``limit`` messages; with a status, those with it among the next
        ``limit`` (at least 100) of the task's messages: a page may hold fewer, even none,
        and a cursor to go on. Either way the cost is the page's, at any task size."""
        if status is None:
            start = decode_cursor(cursor, TABLE_KEY, {"task_id": str(task_id)})
            results = MessageModel.query(task_id, last_evaluated_key=start, limit=limit + 1)
            items, next_cursor = take_page(results, limit, lambda m: key_from(m, TABLE_KEY))
        else:
            items, next_cursor = _filtered_page(
                task_id, status, cursor=cursor, limit=max(limit, 100), consistent=False
            )
            if len(items) > limit:
                items = items[:limit]
                next_cursor = encode_cursor(key_from(items[-1], TABLE_KEY))
        return Page([_message(item) for item in items], next_cursor)


def _filtered_page(
    task_id: int, status: MessageStatus, *, cursor: str | None, limit: int, consistent: bool
) -> tuple[list[MessageModel], str | None]:
    """One Query of the task's partition: the messages with ``status`` among the next
    ``limit`` read, and the cursor after the last one read (None at the end)."""
    start = decode_cursor(cursor, TABLE_KEY, {"task_id": str(task_id)})
    results = MessageModel.query(
        task_id,
        filter_condition=MessageModel.status == status.value,
        last_evaluated_key=start,
        page_size=limit,
        consistent_read=consistent,
    )
    page = next(results.page_iter)
    items = [MessageModel.from_raw_data(raw) for raw in page.get("Items", [])]
    last = page.get("LastEvaluatedKey")
    return items, (encode_cursor(last) if last else None)


def _update(
    task_id: int, change: Change, now: datetime, expires_at: datetime | None = None
) -> bool:
    try:
        MessageModel(task_id, change.client_id).update(
            actions=_actions(change, now, expires_at), condition=_condition(change)
        )
    except UpdateError as error:
        if _conditional_failure(error):
            return False
        raise
    return True


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


class DynamoCountLedger:
    """The counter items behind ``CountLedger`` (``chalicelib/ports.py``): one per
    task and slot; a shard writes to the slot its id hashes to.

    Changes that reach a final status also move the timeline's hour items of that slot
    (``chalicelib/storage/timeline.py``) and add their days to the counter item's list,
    in one transaction with the counts and the mark, so a batch delivered again moves
    neither twice. A batch with no final status writes the counter item alone, as one
    ``UpdateItem``; a transaction costs two write units an item (the counter item and
    one hour item, sometimes two, each a write unit or two: about 4 to 6 units).
    """

    def add(self, shard_id: str, task_id: int, changes: Sequence[StatusChange]) -> None:
        slot = counter_slot(shard_id, COUNTER_SHARDS)
        name = counter_name(task_id, slot)
        conflicts = 0
        while True:
            try:
                item: CounterModel | None = CounterModel.get(name, consistent_read=True)
            except DoesNotExist:
                item = None
            marks: dict[str, str] = json.loads(item.marks) if item and item.marks else {}
            version = int(item.marks_version) if item and item.marks_version else None
            mark = marks.get(shard_id)
            left = not_counted(changes, None if mark is None else int(mark))
            if not left:
                return  # all counted already: a batch delivered again
            todo = within_hours(left, TIMELINE_HOURS_PER_WRITE)
            marks[shard_id] = str(max(change.sequence for change in todo))
            actions: list[Any] = [
                getattr(CounterModel, field).add(n) for field, n in deltas(todo).items()
            ]
            actions += [
                CounterModel.marks.set(json.dumps(marks, sort_keys=True)),
                CounterModel.marks_version.set((version or 0) + 1),
            ]
            condition = (
                CounterModel.marks_version.does_not_exist()
                if version is None
                else CounterModel.marks_version == version
            )
            hours = hour_actions(minute_counts(todo))
            try:
                if hours:
                    actions.append(CounterModel.timeline_days.add(days_of(hours)))
                    with TransactWrite(connection=transaction_connection()) as tx:
                        tx.update(CounterModel(name), actions=actions, condition=condition)
                        for hour, adds in hours.items():
                            tx.update(
                                TimelineHourModel(hour_name(task_id, slot, hour)), actions=adds
                            )
                else:
                    CounterModel(name).update(actions=actions, condition=condition)
            except (UpdateError, TransactWriteError) as error:
                conflicts += 1
                if not _lost_race(error) or conflicts == CONFLICT_ATTEMPTS:
                    raise
                # Another shard wrote to this item since it was read: read it again.
                time.sleep(random.uniform(0, 0.02 * 2**conflicts))  # noqa: S311 - jitter
                continue
            if len(todo) == len(left):
                return
            # The rest falls in later hours than one transaction holds: counted next.


def _lost_race(error: UpdateError | TransactWriteError) -> bool:
    """The write met another one on its items (a changed mark, a concurrent transaction)."""
    if isinstance(error, UpdateError):
        return _conditional_failure(error)
    codes = {reason.code for reason in error.cancellation_reasons if reason is not None}
    return bool(codes) and codes <= {CANCELLED_BY_CONDITION, TRANSACTION_CONFLICT}


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
