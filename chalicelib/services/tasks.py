"""Mailing task use cases: create, read, change within the lifecycle rules, delete."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from chalicelib import logs
from chalicelib.clock import Clock
from chalicelib.domain.tasks import (
    TaskStatus,
    check_update_allowed,
    effective_status,
    format_instant,
)
from chalicelib.errors import Conflict, ValidationFailed
from chalicelib.schemas import (
    FilterOut,
    Page,
    SendWindowOut,
    TaskCreate,
    TaskOut,
    TaskUpdate,
)
from chalicelib.storage import tasks as store
from chalicelib.storage.models import TaskModel

log = logs.get_logger("tasks")

# A task changed by another writer between our read and write is re-read this often.
UPDATE_ATTEMPTS = 3
# Changes of a running task after which waiting messages are judged again.
REJUDGED_BY = frozenset({"window_from", "window_to", "end_time"})


def task_status(task: TaskModel, now: datetime) -> TaskStatus:
    return effective_status(TaskStatus(task.status), task.start_time, task.end_time, now)


def to_out(task: TaskModel, now: datetime) -> TaskOut:
    window = None
    if task.window_from is not None and task.window_to is not None:
        window = SendWindowOut.model_validate({"from": task.window_from, "to": task.window_to})
    return TaskOut(
        id=int(task.id),
        start_time=format_instant(task.start_time),
        end_time=format_instant(task.end_time),
        text=task.text,
        filter=FilterOut(
            codes=[str(code) for code in task.filter_codes],
            tags=[str(tag) for tag in task.filter_tags],
        ),
        send_window=window,
        status=task_status(task, now),
        created_at=format_instant(task.created_at),
        updated_at=format_instant(task.updated_at),
    )


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _stored_changes(task: TaskModel, data: TaskUpdate) -> dict[str, Any]:
    """Map the request onto stored attributes, keeping only real changes."""
    given = data.model_dump(exclude_unset=True)
    wanted: dict[str, Any] = {}
    if "start_time" in given:
        wanted["start_time"] = data.start_time
    if "end_time" in given:
        wanted["end_time"] = data.end_time
    if "text" in given:
        wanted["text"] = data.text
    if data.filter is not None:
        wanted["filter_codes"] = _unique(data.filter.codes)
        wanted["filter_tags"] = _unique(data.filter.tags)
    if "send_window" in given:
        window = data.send_window
        wanted["window_from"] = window.start if window else None
        wanted["window_to"] = window.end if window else None
    return {name: value for name, value in wanted.items() if getattr(task, name) != value}


# Stored attribute -> the API field a person sees in errors.
_API_FIELD = {
    "filter_codes": "filter",
    "filter_tags": "filter",
    "window_from": "send_window",
    "window_to": "send_window",
}


def _no_start(task_id: int) -> None:
    return None


class TaskService:
    def __init__(
        self,
        clock: Clock,
        *,
        on_due: Callable[[int], None] = _no_start,
        sleep: Callable[[float], None] = time.sleep,
        delete_grace_seconds: float = 0.0,
    ) -> None:
        self._clock = clock
        self._on_due = on_due
        self._sleep = sleep
        self._delete_grace = delete_grace_seconds

    def _start_if_due(self, task: TaskModel, now: datetime) -> None:
        """SPEC rule 1: a due task starts at once, not at the next schedule tick."""
        if task_status(task, now) is not TaskStatus.RUNNING:
            return
        try:
            self._on_due(int(task.id))
        except Exception:
            # The answer does not depend on it: the schedule resumes the fan-out.
            log.exception("immediate start failed; the schedule will resume it")

    def create(self, data: TaskCreate) -> TaskOut:
        now = self._clock()
        if data.end_time <= now:
            raise ValidationFailed(
                "The request has invalid fields.", {"end_time": "must be in the future"}
            )
        status = TaskStatus.RUNNING if data.start_time <= now else TaskStatus.SCHEDULED
        window = (data.send_window.start, data.send_window.end) if data.send_window else None
        task = store.create(
            start_time=data.start_time,
            end_time=data.end_time,
            text=data.text,
            codes=_unique(data.filter.codes),
            tags=_unique(data.filter.tags),
            window=window,
            status=status,
            now=now,
        )
        with logs.bind(task_id=int(task.id)):
            log.info("task created", extra={"status": status.value})
            self._start_if_due(task, now)
        return to_out(task, now)

    def get(self, task_id: int) -> TaskOut:
        return to_out(store.require(task_id), self._clock())

    def update(self, task_id: int, data: TaskUpdate) -> TaskOut:
        for _ in range(UPDATE_ATTEMPTS):
            now = self._clock()
            task = store.require(task_id)
            changes = _stored_changes(task, data)
            status = task_status(task, now)
            check_update_allowed(status, {_API_FIELD.get(name, name) for name in changes})
            if not changes:
                return to_out(task, now)
            self._check_times(task, changes, now)
            if status is TaskStatus.RUNNING and REJUDGED_BY & set(changes):
                # Waiting messages were timed by the old window or end (some were set
                # aside as too late): have them judged again.
                changes["wake_all"] = True
            try:
                store.update(task, changes, now=now)
            except store.StaleTask:
                continue  # changed meanwhile: re-read and apply the rules again
            with logs.bind(task_id=task_id):
                log.info("task updated", extra={"changed": sorted(changes), "status": status})
                self._start_if_due(task, now)
            return to_out(task, now)
        raise Conflict("The task was changed by another request; try again.")

    @staticmethod
    def _check_times(task: TaskModel, changes: dict[str, Any], now: datetime) -> None:
        start = changes.get("start_time", task.start_time)
        end = changes.get("end_time", task.end_time)
        if end <= start:
            field = "end_time" if "end_time" in changes else "start_time"
            other = "start_time" if field == "end_time" else "end_time"
            relation = "after" if field == "end_time" else "before"
            raise ValidationFailed(
                "The request has invalid fields.", {field: f"must be {relation} {other}"}
            )
        if "end_time" in changes and end <= now:
            raise ValidationFailed(
                "The request has invalid fields.", {"end_time": "must be in the future"}
            )

    def delete(self, task_id: int) -> None:
        store.mark_deleted(task_id, now=self._clock())
        # Senders re-read the task at most MAX_CHECK_AGE before each call: once this
        # grace has passed, none can begin a call for the task (SPEC rule 8).
        self._sleep(self._delete_grace)
        with logs.bind(task_id=task_id):
            log.info("task deleted")

    def list(self, *, limit: int, cursor: str | None) -> Page[TaskOut]:
        now = self._clock()
        page = store.list_page(limit=limit, cursor=cursor)
        return Page[TaskOut](items=[to_out(t, now) for t in page.items], next=page.next)
