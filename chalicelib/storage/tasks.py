"""Task storage: conditional writes, and the due-task query on the sparse index."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

from pynamodb.exceptions import PutError, UpdateError
from pynamodb.expressions.update import Action

from chalicelib.domain.lifecycle import ms
from chalicelib.domain.retention import Retention, deleted_task_expiry
from chalicelib.domain.tasks import (
    Fanout,
    SendingTask,
    SendWindow,
    Task,
    TaskPlan,
    TaskStatus,
    format_hhmm,
)
from chalicelib.ports import Page, StaleTask
from chalicelib.storage.ids import next_id
from chalicelib.storage.models import (
    OPEN_SHARD,
    PURGE_SHARD,
    TaskModel,
    TaskProgressModel,
    live_task_condition,
)
from chalicelib.storage.pagination import KeySchema, decode_cursor, key_from, take_page

CONDITION_FAILED = "ConditionalCheckFailedException"
TABLE_KEY: KeySchema = {"id": "N"}


__all__ = ["DynamoTasks", "find_due"]


def find_due(now: datetime) -> Iterator[TaskModel]:
    """Unfinished tasks whose start has passed: a query on the sparse index, no scan.

    Tasks whose end has also passed are included: finishing them is due too.
    """
    return TaskModel.open_by_start.query(OPEN_SHARD, TaskModel.start_ms <= ms(now))


def _read(task_id: int) -> TaskModel | None:
    """The stored task, or None if it never existed or was deleted."""
    try:
        task = TaskModel.get(task_id, consistent_read=True)
    except TaskModel.DoesNotExist:
        return None
    return None if task.deleted else task


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
        rate_limit=None if task.rate_limit is None else int(task.rate_limit),
        status=TaskStatus(task.status),
        created_at=task.created_at,
        updated_at=task.updated_at,
        version=task.version,
        deleted=bool(task.deleted),
        fanout=Fanout(
            done=bool(task.fanout_done),
            max_id=int(task.fanout_max_id or 0),
            ranks=int(task.fanout_ranks or 0),
        ),
        rejudge=bool(task.wake_all),
        first_sent=task.first_sent_at is not None,
        fanout_at_ms=int(task.fanout_at_ms or 0),
    )


def _plan_actions(plan: TaskPlan) -> list[Action]:
    actions: list[Action] = [
        TaskModel.start_time.set(plan.start),
        TaskModel.start_ms.set(ms(plan.start)),
        TaskModel.end_time.set(plan.end),
        TaskModel.text.set(plan.text),
        # list[Any]: PynamoDB types a list of strings as a list of UnicodeAttribute.
        TaskModel.filter_codes.set(list[Any](plan.codes)),
        TaskModel.filter_tags.set(list[Any](plan.tags)),
    ]
    if plan.rate_limit is None:
        actions.append(TaskModel.rate_limit.remove())
    else:
        actions.append(TaskModel.rate_limit.set(plan.rate_limit))
    if plan.window is None:
        return [*actions, TaskModel.window_from.remove(), TaskModel.window_to.remove()]
    return [
        *actions,
        TaskModel.window_from.set(format_hhmm(plan.window.start)),
        TaskModel.window_to.set(format_hhmm(plan.window.end)),
    ]


def _update(task: Task, actions: list[Action], now: datetime) -> SendingTask:
    """Write ``actions`` if nobody changed the task since ``task`` was read: PynamoDB
    makes the write conditional on the version read, and moves it on."""
    item = TaskModel(task.id)
    if task.version is not None:
        item.version = task.version
    try:
        item.update(
            actions=[*actions, TaskModel.updated_at.set(now)],
            condition=TaskModel.id.exists() & live_task_condition(),
        )
    except UpdateError as error:
        if error.cause_response_code == CONDITION_FAILED:
            raise StaleTask from None
        raise
    return _view(item)


class DynamoTasks:
    """The tasks table behind the engine's ``TaskRepository`` and the API's
    ``TaskCatalog`` (``chalicelib/ports.py``). ``retention`` times the TTL stamp of a
    finished task (None: finished tasks are kept)."""

    def __init__(self, retention: Retention | None = None) -> None:
        self._retention = retention

    def get(self, task_id: int) -> SendingTask | None:
        task = _read(task_id)
        return None if task is None else _view(task)

    # --- the API's --------------------------------------------------------------------

    def create(self, plan: TaskPlan, status: TaskStatus, now: datetime) -> Task:
        window = plan.window
        task = TaskModel(
            id=next_id("tasks"),
            start_time=plan.start,
            end_time=plan.end,
            start_ms=ms(plan.start),
            text=plan.text,
            filter_codes=list(plan.codes),
            filter_tags=list(plan.tags),
            window_from=format_hhmm(window.start) if window else None,
            window_to=format_hhmm(window.end) if window else None,
            rate_limit=plan.rate_limit,
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
        return _view(task)

    def update(self, task: Task, plan: TaskPlan, now: datetime, *, rejudge: bool) -> Task:
        actions = _plan_actions(plan)
        if rejudge:
            actions.append(TaskModel.wake_all.set(True))
        return _update(task, actions, now)

    def set_control(self, task: Task, status: TaskStatus, now: datetime, *, rejudge: bool) -> Task:
        """An operator's pause, resume or cancel (``chalicelib/domain/tasks.py``), if the
        task is as read: it stays on the due index, where the dispatcher sweeps a
        paused task at its end and a cancelled one at once."""
        actions: list[Action] = [
            TaskModel.status.set(status.value),
            TaskModel.open_shard.set(OPEN_SHARD),
        ]
        if rejudge:
            actions.append(TaskModel.wake_all.set(True))
        return _update(task, actions, now)

    def delete(self, task_id: int, now: datetime) -> bool:
        """A tombstone: senders reading the task see it gone; it leaves the due index for
        the purge shard, where the dispatcher finds it to remove its messages, and DynamoDB
        removes it soon after (TTL). Whatever its version, which it moves on: an edit read
        before fails."""
        try:
            TaskProgressModel(task_id).update(
                actions=[
                    TaskProgressModel.deleted.set(True),
                    TaskProgressModel.open_shard.set(PURGE_SHARD),
                    TaskProgressModel.expires_at.set(deleted_task_expiry(now)),
                    TaskProgressModel.updated_at.set(now),
                    TaskProgressModel.version.add(1),
                ],
                condition=TaskProgressModel.id.exists() & live_task_condition(),
            )
        except UpdateError as error:
            if error.cause_response_code == CONDITION_FAILED:
                return False
            raise
        return True

    def page(self, *, limit: int, cursor: str | None) -> Page[Task]:
        # Listing every task is the point of this call, so a paged scan is the right tool.
        results = TaskModel.scan(
            filter_condition=live_task_condition(),
            last_evaluated_key=decode_cursor(cursor, TABLE_KEY),
            limit=limit + 1,
        )
        items, next_cursor = take_page(results, limit, lambda t: key_from(t, TABLE_KEY))
        return Page([_view(item) for item in items], next_cursor)

    # --- the engine's -----------------------------------------------------------------

    def due(self, now: datetime) -> list[SendingTask]:
        """The index is eventually consistent: each due task is read again, consistently,
        so that no decision is made on an old end, window or checkpoint."""
        found = []
        for indexed in find_due(now):
            task = _read(int(indexed.id))
            if task is not None and task.open_shard is not None:
                found.append(_view(task))
        return found

    def set_status(self, task: SendingTask, status: TaskStatus, now: datetime) -> SendingTask:
        """Move the stored status; a finished task, or a cancelled one (the dispatcher
        closes it once nothing is pending), leaves the due index and is stamped to expire
        with its messages (same write)."""
        shard = TaskModel.open_shard
        closed = status in (TaskStatus.FINISHED, TaskStatus.CANCELLED)
        actions: list[Action] = [
            TaskModel.status.set(status.value),
            shard.remove() if closed else shard.set(OPEN_SHARD),
        ]
        if closed and self._retention is not None:
            expiry = self._retention.finished_task_expiry(task.end, now)
            actions.append(TaskModel.expires_at.set(expiry))
        stored = _update(task, actions, now)
        return replace(task, status=status, updated_at=stored.updated_at, version=stored.version)

    def plan_fanout(
        self, task: SendingTask, *, max_id: int, ranks: int, now: datetime
    ) -> SendingTask:
        """Record the segments' plan, once (conditional: a run that raced another one
        gets StaleTask and reads the plan the other wrote). The version is left alone so
        that edits of a running task do not collide with the fan-out."""
        item = TaskProgressModel
        try:
            item(task.id).update(
                actions=[
                    item.fanout_max_id.set(max_id),
                    item.fanout_ranks.set(ranks),
                    item.fanout_at_ms.set(ms(now)),
                ],
                condition=live_task_condition() & item.fanout_ranks.does_not_exist(),
            )
        except UpdateError as error:
            if error.cause_response_code == CONDITION_FAILED:
                raise StaleTask from None
            raise
        fanout = Fanout(done=False, max_id=max_id, ranks=ranks)
        return replace(task, fanout=fanout, fanout_at_ms=ms(now))

    def finish_fanout(self, task: SendingTask, now: datetime) -> SendingTask:
        """Every segment is done (a second call changes nothing)."""
        item = TaskProgressModel
        try:
            item(task.id).update(
                actions=[item.fanout_done.set(True), item.fanout_at_ms.set(ms(now))],
                condition=live_task_condition(),
            )
        except UpdateError as error:
            if error.cause_response_code == CONDITION_FAILED:
                raise StaleTask from None
            raise
        return replace(task, fanout=replace(task.fanout, done=True), fanout_at_ms=ms(now))

    def clear_rejudge(self, task: SendingTask) -> None:
        """Done judging waiting messages again, unless the task changed once more since."""
        version = TaskProgressModel.version
        try:
            TaskProgressModel(task.id).update(
                actions=[TaskProgressModel.wake_all.set(False)],
                condition=TaskProgressModel.id.exists()
                & (version.does_not_exist() if task.version is None else version == task.version),
            )
        except UpdateError as error:
            if error.cause_response_code != CONDITION_FAILED:
                raise

    def mark_first_send(self, task_id: int, at: datetime) -> bool:
        """Record the task's first accepted message; False if one was recorded before."""
        try:
            TaskProgressModel(task_id).update(
                actions=[TaskProgressModel.first_sent_at.set(at)],
                condition=TaskProgressModel.id.exists()
                & TaskProgressModel.first_sent_at.does_not_exist(),
            )
        except UpdateError as error:
            if error.cause_response_code == CONDITION_FAILED:
                return False
            raise
        return True
