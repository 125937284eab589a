"""Task storage: conditional writes, and the due-task query on the sparse index."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pynamodb.exceptions import DeleteError, PutError, UpdateError

from chalicelib.domain.tasks import TaskStatus
from chalicelib.errors import NotFound
from chalicelib.storage.ids import next_id
from chalicelib.storage.models import OPEN_SHARD, TaskModel
from chalicelib.storage.pagination import KeySchema, decode_cursor, key_from, take_page

CONDITION_FAILED = "ConditionalCheckFailedException"
TABLE_KEY: KeySchema = {"id": "N"}


class StaleTask(Exception):
    """The task changed since it was read; the caller re-reads and decides again."""


@dataclass(frozen=True)
class TaskPage:
    items: list[TaskModel]
    next: str | None


def epoch_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


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
        start_ms=epoch_ms(start_time),
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
    try:
        return TaskModel.get(task_id, consistent_read=True)
    except TaskModel.DoesNotExist:
        return None


def require(task_id: int) -> TaskModel:
    task = get(task_id)
    if task is None:
        raise NotFound(f"Task {task_id} does not exist.")
    return task


def update(task: TaskModel, changes: Mapping[str, Any], *, now: datetime) -> TaskModel:
    """Write ``changes`` if nobody changed the task since ``task`` was read."""
    actions = []
    for name, value in changes.items():
        attribute = getattr(TaskModel, name)
        actions.append(attribute.remove() if value is None else attribute.set(value))
    if "start_time" in changes:
        actions.append(TaskModel.start_ms.set(epoch_ms(changes["start_time"])))
    actions.append(TaskModel.updated_at.set(now))
    try:
        task.update(
            actions=actions,
            condition=TaskModel.id.exists() & (TaskModel.updated_at == task.updated_at),
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


def delete(task_id: int) -> None:
    try:
        TaskModel(task_id).delete(condition=TaskModel.id.exists())
    except DeleteError as error:
        if error.cause_response_code == CONDITION_FAILED:
            raise NotFound(f"Task {task_id} does not exist.") from None
        raise


def find_due(now: datetime) -> Iterator[TaskModel]:
    """Unfinished tasks whose start has passed: a query on the sparse index, no scan.

    Tasks whose end has also passed are included: finishing them is due too.
    """
    return TaskModel.open_by_start.query(OPEN_SHARD, TaskModel.start_ms <= epoch_ms(now))


def list_page(*, limit: int, cursor: str | None) -> TaskPage:
    # Listing every task is the point of this call, so a paged scan is the right tool.
    start = decode_cursor(cursor, TABLE_KEY)
    results = TaskModel.scan(last_evaluated_key=start, limit=limit + 1)
    items, next_cursor = take_page(results, limit, lambda t: key_from(t, TABLE_KEY))
    return TaskPage(items=items, next=next_cursor)
