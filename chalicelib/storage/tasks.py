"""Task storage: conditional writes, and the due-task query on the sparse index."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pynamodb.exceptions import PutError, UpdateError
from pynamodb.expressions.update import Action

from chalicelib.domain.lifecycle import ms
from chalicelib.domain.tasks import Fanout, SendingTask, SendWindow, TaskStatus
from chalicelib.errors import NotFound
from chalicelib.ports import StaleTask
from chalicelib.storage.ids import next_id
from chalicelib.storage.models import OPEN_SHARD, TaskModel, live_task_condition
from chalicelib.storage.pagination import KeySchema, decode_cursor, key_from, take_page

CONDITION_FAILED = "ConditionalCheckFailedException"
TABLE_KEY: KeySchema = {"id": "N"}


__all__ = ["DynamoTasks", "StaleTask"]


@dataclass(frozen=True)
class TaskPage:
    items: list[TaskModel]
    next: str | None


def create(
    *,
    start_time: datetime,
    end_time: datetime,
    text: str,
    codes: list[str],
    tags: list[str],
    window: tuple[str, str] | None,
    status: TaskStatus,
    now: datetime,
) -> TaskModel:
    task = TaskModel(
        id=next_id("tasks"),
        start_time=start_time,
        end_time=end_time,
        start_ms=ms(start_time),
        text=text,
        filter_codes=codes,
        filter_tags=tags,
        window_from=window[0] if window else None,
        window_to=window[1] if window else None,
        status=status.value,
        open_shard=None if status is TaskStatus.FINISHED else OPEN_SHARD,
        created_at=now,
        updated_at=now,
    )
    try:
        task.save(condition=TaskModel.id.does_not_exist())
    except PutError as error:  # only a broken id counter could get here
        if error.cause_response_code == CONDITION_FAILED:
            raise StaleTask from None
        raise
    return task


def get(task_id: int) -> TaskModel | None:
    """The task, or None if it never existed or was deleted."""
    try:
        task = TaskModel.get(task_id, consistent_read=True)
    except TaskModel.DoesNotExist:
        return None
    return None if task.deleted else task


def require(task_id: int) -> TaskModel:
    task = get(task_id)
    if task is None:
        raise NotFound(f"Task {task_id} does not exist.")
    return task


def update(task: TaskModel, changes: Mapping[str, Any], *, now: datetime) -> TaskModel:
    """Write ``changes`` if nobody changed the task since ``task`` was read."""
    actions: list[Action] = []
    for name, value in changes.items():
        attribute = getattr(TaskModel, name)
        actions.append(attribute.remove() if value is None else attribute.set(value))
    if "start_time" in changes:
        actions.append(TaskModel.start_ms.set(ms(changes["start_time"])))
    actions.append(TaskModel.updated_at.set(now))
    try:
        task.update(
            actions=actions,
            condition=TaskModel.id.exists()
            & live_task_condition()
            & (TaskModel.updated_at == task.updated_at),
        )
    except UpdateError as error:
        if error.cause_response_code == CONDITION_FAILED:
            raise StaleTask from None
        raise
    return task


def set_status(task: TaskModel, status: TaskStatus, *, now: datetime) -> TaskModel:
    """Move the stored status; a finished task leaves the due index."""
    shard = None if status is TaskStatus.FINISHED else OPEN_SHARD
    return update(task, {"status": status.value, "open_shard": shard}, now=now)


def mark_deleted(task_id: int, *, now: datetime) -> None:
    """Leave a tombstone: senders reading the task see it gone; it leaves the due index."""
    try:
        TaskModel(task_id).update(
            actions=[
                TaskModel.deleted.set(True),
                TaskModel.open_shard.remove(),
                TaskModel.updated_at.set(now),
            ],
            condition=TaskModel.id.exists() & live_task_condition(),
        )
    except UpdateError as error:
        if error.cause_response_code == CONDITION_FAILED:
            raise NotFound(f"Task {task_id} does not exist.") from None
        raise


def advance_fanout(
    task: TaskModel, *, part: int, cursor: str | None, done: bool, now: datetime
) -> TaskModel:
    """Move the fan-out checkpoint from where ``task`` had it (conditional: no gap,
    no repeat if two dispatchers race); ``updated_at`` is left alone so edits of a
    running task do not collide with the fan-out."""
    at_cursor = (
        TaskModel.fanout_cursor.does_not_exist()
        if task.fanout_cursor is None
        else TaskModel.fanout_cursor == task.fanout_cursor
    )
    actions: list[Action] = [
        TaskModel.fanout_part.set(part),
        TaskModel.fanout_cursor.remove() if cursor is None else TaskModel.fanout_cursor.set(cursor),
        TaskModel.fanout_done.set(done),
        TaskModel.fanout_at_ms.set(ms(now)),
    ]
    try:
        task.update(
            actions=actions,
            condition=live_task_condition()
            & (TaskModel.fanout_part == task.fanout_part)
            & at_cursor,
        )
    except UpdateError as error:
        if error.cause_response_code == CONDITION_FAILED:
            raise StaleTask from None
        raise
    return task


def find_due(now: datetime) -> Iterator[TaskModel]:
    """Unfinished tasks whose start has passed: a query on the sparse index, no scan.

    Tasks whose end has also passed are included: finishing them is due too.
    """
    return TaskModel.open_by_start.query(OPEN_SHARD, TaskModel.start_ms <= ms(now))


def list_page(*, limit: int, cursor: str | None) -> TaskPage:
    # Listing every task is the point of this call, so a paged scan is the right tool.
    start = decode_cursor(cursor, TABLE_KEY)
    results = TaskModel.scan(
        filter_condition=live_task_condition(), last_evaluated_key=start, limit=limit + 1
    )
    items, next_cursor = take_page(results, limit, lambda t: key_from(t, TABLE_KEY))
    return TaskPage(items=items, next=next_cursor)


def mark_first_send(task_id: int, sent_at: datetime) -> bool:
    """Record the task's first accepted message; False if one was recorded before."""
    try:
        TaskModel(task_id).update(
            actions=[TaskModel.first_sent_at.set(sent_at)],
            condition=TaskModel.id.exists() & TaskModel.first_sent_at.does_not_exist(),
        )
    except UpdateError as error:
        if error.cause_response_code == CONDITION_FAILED:
            return False
        raise
    return True


def _view(task: TaskModel) -> SendingTask:
    window = None
    if task.window_from is not None and task.window_to is not None:
        window = SendWindow.parse(task.window_from, task.window_to)
    return SendingTask(
        id=int(task.id),
        start=task.start_time,
        end=task.end_time,
        text=task.text,
        codes=tuple(str(code) for code in task.filter_codes),
        tags=tuple(str(tag) for tag in task.filter_tags),
        window=window,
        status=TaskStatus(task.status),
        deleted=bool(task.deleted),
        fanout=Fanout(int(task.fanout_part or 0), task.fanout_cursor, bool(task.fanout_done)),
        rejudge=bool(task.wake_all),
        first_sent=task.first_sent_at is not None,
        fanout_at_ms=int(task.fanout_at_ms or 0),
        version=task.updated_at,
    )


def _model(task: SendingTask) -> TaskModel:
    """A key-only item carrying what the conditional writes compare against."""
    return TaskModel(
        task.id,
        updated_at=task.version,
        fanout_part=task.fanout.part,
        fanout_cursor=task.fanout.cursor,
    )


class DynamoTasks:
    """The tasks table behind the engine's ``TaskRepository`` (``chalicelib/ports.py``)."""

    def get(self, task_id: int) -> SendingTask | None:
        task = get(task_id)
        return None if task is None else _view(task)

    def due(self, now: datetime) -> list[SendingTask]:
        """The index is eventually consistent: each due task is read again, consistently,
        so that no decision is made on an old end, window or checkpoint."""
        found = []
        for indexed in find_due(now):
            task = get(int(indexed.id))
            if task is not None and task.open_shard is not None:
                found.append(_view(task))
        return found

    def set_status(self, task: SendingTask, status: TaskStatus, now: datetime) -> SendingTask:
        stored = set_status(_model(task), status, now=now)
        return replace(task, status=status, version=stored.updated_at)

    def advance_fanout(
        self, task: SendingTask, *, part: int, cursor: str | None, done: bool, now: datetime
    ) -> SendingTask:
        advance_fanout(_model(task), part=part, cursor=cursor, done=done, now=now)
        return replace(task, fanout=Fanout(part, cursor, done), fanout_at_ms=ms(now))

    def clear_rejudge(self, task: SendingTask) -> None:
        """Done judging waiting messages again, unless the task changed once more since."""
        try:
            TaskModel(task.id).update(
                actions=[TaskModel.wake_all.set(False)],
                condition=TaskModel.updated_at == task.version,
            )
        except UpdateError as error:
            if error.cause_response_code != CONDITION_FAILED:
                raise

    def mark_first_send(self, task_id: int, at: datetime) -> bool:
        return mark_first_send(task_id, at)
