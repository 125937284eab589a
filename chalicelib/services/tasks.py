"""Mailing task use cases: create, read, change within the lifecycle rules, delete."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from chalicelib import logs
from chalicelib.clock import Clock
from chalicelib.domain.tasks import (
    Control,
    Task,
    TaskChanges,
    TaskPlan,
    TaskStatus,
    changed_fields,
    check_times,
    check_update_allowed,
    control_target,
)
from chalicelib.errors import Conflict, NotFound
from chalicelib.ports import Page, StaleTask, TaskCatalog

log = logs.get_logger("tasks")

# A task changed by another writer between our read and write is re-read this often.
UPDATE_ATTEMPTS = 3
# Changes of a running task after which waiting messages are judged again.
REJUDGED_BY = frozenset({"window", "end"})


def as_of(task: Task, now: datetime) -> Task:
    """The task with the status it has at ``now`` (the schedule may not have ticked)."""
    return replace(task, status=task.status_at(now))


def _no_start(task_id: int) -> None:
    return None


class TaskService:
    def __init__(
        self,
        clock: Clock,
        tasks: TaskCatalog,
        *,
        on_due: Callable[[int], None] = _no_start,
        sleep: Callable[[float], None] = time.sleep,
        delete_grace_seconds: float = 0.0,
    ) -> None:
        self._clock = clock
        self._tasks = tasks
        self._on_due = on_due
        self._sleep = sleep
        self._delete_grace = delete_grace_seconds

    def _start_if_due(self, task: Task, now: datetime) -> None:
        """SPEC rule 1: a due task starts at once, not at the next schedule tick."""
        if task.status_at(now) is not TaskStatus.RUNNING:
            return
        try:
            self._on_due(task.id)
        except Exception:
            # The answer does not depend on it: the schedule resumes the fan-out.
            log.exception("immediate start failed; the schedule will resume it")

    def _require(self, task_id: int) -> Task:
        task = self._tasks.get(task_id)
        if task is None:
            raise NotFound(f"Task {task_id} does not exist.")
        return task

    def create(self, plan: TaskPlan) -> Task:
        now = self._clock()
        check_times(plan, now)
        status = TaskStatus.RUNNING if plan.start <= now else TaskStatus.SCHEDULED
        task = self._tasks.create(plan.deduplicated(), status, now)
        with logs.bind(task_id=task.id):
            log.info("task created", extra={"status": status.value})
            self._start_if_due(task, now)
        return as_of(task, now)

    def get(self, task_id: int) -> Task:
        return as_of(self._require(task_id), self._clock())

    def update(self, task_id: int, changes: TaskChanges) -> Task:
        for _ in range(UPDATE_ATTEMPTS):
            now = self._clock()
            task = self._require(task_id)
            plan = changes.applied_to(task)
            changed = changed_fields(task, plan)
            status = task.status_at(now)
            if status is TaskStatus.PAUSED:
                status = task.schedule_at(now)  # a paused task changes as it would unpaused
            check_update_allowed(status, changed)
            if not changed:
                return as_of(task, now)
            check_times(plan, now, moved=changed)
            # Waiting messages of a running task were timed by the old window or end (some
            # were set aside as too late): have them judged again.
            rejudge = status is TaskStatus.RUNNING and bool(REJUDGED_BY & set(changed))
            try:
                task = self._tasks.update(task, plan, now, rejudge=rejudge)
            except StaleTask:
                continue  # changed meanwhile: re-read and apply the rules again
            with logs.bind(task_id=task_id):
                log.info(
                    "task updated",
                    extra={"changed": sorted(changed), "rejudge": rejudge, "status": status},
                )
                self._start_if_due(task, now)
            return as_of(task, now)
        raise Conflict("The task was changed by another request; try again.")

    def control(self, task_id: int, control: Control) -> Task:
        """Pause, resume or cancel (SPEC: campaign controls). A pause or cancel answers
        once no sender can still begin a call for the task (the delete's grace); a
        cancel's pending messages, and a resume's waiting ones, get a first page of the
        dispatcher's work at once, the schedule does the rest."""
        for _ in range(UPDATE_ATTEMPTS):
            now = self._clock()
            task = self._require(task_id)
            target = control_target(control, task, now)
            try:
                task = self._tasks.set_control(task, target, now, rejudge=control is Control.RESUME)
            except StaleTask:
                continue  # changed meanwhile: re-read and apply the rules again
            with logs.bind(task_id=task_id):
                log.info(f"task {control.value}d", extra={"status": target.value})
                if control is not Control.RESUME:
                    self._sleep(self._delete_grace)
                if control is Control.CANCEL or task.status_at(now) is TaskStatus.RUNNING:
                    self._run_now(task)
                if control is Control.RESUME:
                    # The dispatcher's first page finishes a task with nothing pending.
                    task = self._tasks.get(task_id) or task
            return as_of(task, now)
        raise Conflict("The task was changed by another request; try again.")

    def _run_now(self, task: Task) -> None:
        try:
            self._on_due(task.id)
        except Exception:
            log.exception("the dispatcher's first page failed; the schedule will do it")

    def delete(self, task_id: int) -> None:
        if not self._tasks.delete(task_id, self._clock()):
            raise NotFound(f"Task {task_id} does not exist.")
        # Senders re-read the task at most MAX_CHECK_AGE before each call: once this
        # grace has passed, none can begin a call for the task (SPEC rule 8).
        self._sleep(self._delete_grace)
        with logs.bind(task_id=task_id):
            log.info("task deleted")

    def list(self, *, limit: int, cursor: str | None) -> Page[Task]:
        now = self._clock()
        page = self._tasks.page(limit=limit, cursor=cursor)
        return Page([as_of(task, now) for task in page.items], page.next)
