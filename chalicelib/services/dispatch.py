"""The dispatcher: starts due tasks, fans their audience out to the queue, wakes waiting
messages, and finishes tasks.

Runs on the schedule (every minute in AWS), on ``POST /api/tasks/process``, and right
after a due task is created or updated. Every run is bounded by a time budget and
resumable: the fan-out checkpoint on the task says which page comes next, messages are
created with conditional writes, and the checkpoint only moves forward from where it
was read, so a crash or a timeout resumes with no duplicate and no gap.

Tasks share the senders fairly: the queue is kept shallow (at most ``queue_ahead_limit``
jobs ready to be received: a page fills the room left, never more), and due tasks take
turns, one page each, the task served longest ago first, so a small task is never stuck
behind a large one. Only the scheduled run waits for the queue to drain; a run started
by the API never waits.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from chalicelib import logs, metrics
from chalicelib.clock import Clock
from chalicelib.domain import lifecycle
from chalicelib.domain.lifecycle import Decision, ms
from chalicelib.domain.messages import message_id
from chalicelib.domain.tasks import SendingTask, TaskStatus
from chalicelib.ports import (
    Audience,
    JobQueue,
    MessageRepository,
    Recipient,
    StaleTask,
    TaskGone,
    TaskRepository,
    audience_parts,
)
from chalicelib.queue import SendJob
from chalicelib.settings import Settings

log = logs.get_logger("dispatch")

QUEUE_FULL_PAUSE = 0.2  # a look at the queue depth costs one cheap request
# How often a run looks for newly due tasks (a consistent read of each).
DUE_LOOK_SECONDS = 5.0
# Pages of waiting messages one task may wake in one run (the next run goes on).
WAKE_PAGES = 10


@dataclass
class DispatchReport:
    tasks: int = 0
    started: int = 0
    enqueued: int = 0
    expired: int = 0
    finished: int = 0
    woken: int = 0
    incomplete: list[int] = field(default_factory=list)  # out of budget, resumes next run


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        *,
        tasks: TaskRepository,
        messages: MessageRepository,
        audience: Audience,
        queue: JobQueue,
        timing: lifecycle.Timing,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._tasks = tasks
        self._messages = messages
        self._audience = audience
        self._queue = queue
        self._timing = timing
        self._sleep = sleep
        self._monotonic = monotonic

    # --- entry points -----------------------------------------------------------------

    def dispatch_due(self, budget_seconds: float, *, wait: bool = True) -> DispatchReport:
        """Advance every due task (the schedule, and ``POST /api/tasks/process`` with
        ``wait=False``: a full queue ends the run instead of pausing it)."""
        deadline = self._monotonic() + budget_seconds
        report = DispatchReport()
        kept_up: set[int] = set()
        fanning: list[SendingTask] = []
        look_again = self._monotonic()
        while self._monotonic() < deadline:
            if self._monotonic() >= look_again:
                # New due tasks join; between looks, the views the turns return are current.
                fanning = self._due(kept_up, deadline, report)
                look_again = self._monotonic() + DUE_LOOK_SECONDS
            if not fanning:
                break
            progressed, fanning = self._take_turns(fanning, deadline, report)
            if progressed:
                continue
            if not wait or self._monotonic() + QUEUE_FULL_PAUSE >= deadline:
                break
            self._sleep(QUEUE_FULL_PAUSE)  # the senders are behind: let them catch up
        report.incomplete += [task.id for task in fanning if task.id not in report.incomplete]
        self._report(report)
        return report

    def _due(self, kept_up: set[int], deadline: float, report: DispatchReport) -> list[SendingTask]:
        """Due tasks, each kept up once a run; those with pages still to queue, the one
        served longest ago first."""
        now = self._clock()
        fanning = []
        for due in sorted(self._tasks.due(now), key=lambda t: (t.fanout_at_ms, t.id)):
            task: SendingTask | None = due
            if due.id not in kept_up and self._monotonic() >= deadline:
                report.incomplete.append(due.id)
                continue
            if due.id not in kept_up:
                kept_up.add(due.id)
                report.tasks += 1
                task = self._guarded(
                    due,
                    functools.partial(self._keep_up, now=now, deadline=deadline, report=report),
                )
            if task is not None and not task.fanout.done and now < task.end:
                fanning.append(task)
        return fanning

    def start_task(self, task_id: int) -> DispatchReport:
        """SPEC rule 1: a task that just became due gets its first page queued now, ahead
        of the queue's limit and without waiting; the schedule does the rest."""
        report = DispatchReport()
        now = self._clock()
        task = self._tasks.get(task_id)
        if task is None or task.start > now or now >= task.end:
            return report
        report.tasks = 1
        deadline = self._monotonic() + self._settings.api_dispatch_budget_seconds
        with logs.bind(task_id=task_id):
            started = self._guarded(task, lambda t: self._start(t, now, report))
            if started is not None and started.rejudge:
                # A new window or end: waiting messages are judged by it now, a page of
                # them within the request; the schedule wakes the rest.
                self._guarded(started, lambda t: self._wake(t, now, deadline, report, pages=1))
            if started is not None and not started.fanout.done:
                self._guarded(started, lambda t: self._fan_out_page(t, report))
        return report

    def _report(self, report: DispatchReport) -> None:
        metrics.emit(
            {
                "TasksStarted": report.started,
                "TasksFinished": report.finished,
                "MessagesEnqueued": report.enqueued,
                "MessagesExpired": report.expired,
            },
            {},
            self._settings.stage,
        )
        log.info(
            "dispatch run",
            extra={
                "tasks": report.tasks,
                "started": report.started,
                "enqueued": report.enqueued,
                "woken": report.woken,
                "expired": report.expired,
                "finished": report.finished,
                "incomplete": report.incomplete,
            },
        )

    def _guarded(
        self, task: SendingTask, step: Callable[[SendingTask], SendingTask | None]
    ) -> SendingTask | None:
        """Run one step for a task; a task deleted or changed meanwhile waits for the
        next run (which reads it again)."""
        with logs.bind(task_id=task.id):
            try:
                return step(task)
            except TaskGone:
                log.info("task deleted during dispatch")
            except StaleTask:
                log.info("task changed during dispatch; the next run resumes it")
            return None

    # --- one task ---------------------------------------------------------------------

    def _keep_up(
        self, task: SendingTask, *, now: datetime, deadline: float, report: DispatchReport
    ) -> SendingTask | None:
        """Everything a due task needs once a run, except its fan-out pages."""
        if now >= task.end:
            self._wind_up(task, now, deadline, report)
            return None
        task = self._start(task, now, report)
        self._wake(task, now, deadline, report)
        if task.fanout.done:
            self._finish_if_final(task, report)
        return task

    def _start(self, task: SendingTask, now: datetime, report: DispatchReport) -> SendingTask:
        if task.status is TaskStatus.SCHEDULED:
            task = self._tasks.set_status(task, TaskStatus.RUNNING, now)
            report.started += 1
            log.info("task started")
        return task

    def _wind_up(
        self, task: SendingTask, now: datetime, deadline: float, report: DispatchReport
    ) -> None:
        """The end has passed: expire every pending message no live sender holds (those
        are waited for), then finish."""
        now_ms = ms(now)
        cursor: str | None = None
        in_flight = 0
        while self._monotonic() < deadline:
            states, cursor = self._messages.pending(
                task.id, cursor=cursor, limit=self._settings.fanout_page_size
            )
            changes = []
            for state in states:
                verdict = lifecycle.sweep(state, now_ms)
                if isinstance(verdict, lifecycle.Change):
                    changes.append(verdict)
                else:
                    in_flight += 1
            report.expired += len(self._messages.apply(task.id, changes, now))
            if cursor is None:
                break
        if in_flight:
            log.info("waiting for provider calls in flight", extra={"in_flight": in_flight})
        if not self._finish_if_final(task, report):
            report.incomplete.append(task.id)

    def _finish_if_final(self, task: SendingTask, report: DispatchReport) -> bool:
        """Finish the task when none of its messages is pending any more."""
        counts = self._messages.counts([task.id])[task.id]
        # The counts follow the messages' stream a moment behind: none pending by them is
        # checked against the messages themselves (once a task, as a rule).
        if counts.pending or self._messages.has_pending(task.id):
            return False
        self._tasks.set_status(task, TaskStatus.FINISHED, self._clock())
        report.finished += 1
        log.info("task finished", extra={"messages": counts.by_status(), "total": counts.total})
        return True

    # --- waiting messages -------------------------------------------------------------

    def _wake(
        self,
        task: SendingTask,
        now: datetime,
        deadline: float,
        report: DispatchReport,
        *,
        pages: int = WAKE_PAGES,
    ) -> SendingTask:
        """Queue the messages whose wake time has come (and is before the end): a window
        about to open, a job that was lost, a sender that died holding one. After a change
        of the task's window or end (``rejudge``), every waiting message."""
        now_ms = ms(now)
        horizon = None if task.rejudge else min(now_ms, ms(task.end) - 1)
        cursor: str | None = None
        while self._monotonic() < deadline and pages > 0:
            pages -= 1
            waiting, cursor = self._messages.waiting(
                task.id,
                wake_before_ms=horizon,
                cursor=cursor,
                limit=self._settings.fanout_page_size,
            )
            decided: list[tuple[Recipient, Decision]] = []
            for message in waiting:
                verdict = lifecycle.wake(
                    message.state, now_ms, end=task.end, rejudge=task.rejudge, timing=self._timing
                )
                if isinstance(verdict, Decision):
                    decided.append((message.recipient, verdict))
            written = self._messages.apply(task.id, [d.change for _, d in decided], now)
            jobs = [
                _job(task.id, recipient, decision)
                for recipient, decision in decided
                if recipient.client_id in written
            ]
            self._queue.send(jobs, now_ms=now_ms)
            report.woken += len(jobs)
            if jobs:
                log.info("messages woken", extra={"woken": len(jobs), "rejudge": task.rejudge})
            if cursor is None:
                if task.rejudge:
                    self._tasks.clear_rejudge(task)
                return task
        report.incomplete.append(task.id)
        return task

    # --- fan-out ----------------------------------------------------------------------

    def _take_turns(
        self, tasks: list[SendingTask], deadline: float, report: DispatchReport
    ) -> tuple[bool, list[SendingTask]]:
        """One fan-out page for each task in turn while the queue has room. Returns whether
        any checkpoint moved, and the tasks with pages still to queue (as they are now; a
        task changed by someone else waits for the next look)."""
        progressed = False
        left: list[SendingTask] = []
        limit, page_size = self._settings.queue_ahead_limit, self._settings.fanout_page_size
        # A page fills the room left under the limit, never more: a page that overshot it
        # put a whole page ahead of every task started after it. A page waits until the
        # room is half the limit (or a whole page), so pages stay large.
        smallest = min(page_size, max(1, limit // 2))
        for index, task in enumerate(tasks):
            room = limit - self._queue.depth()
            if self._monotonic() >= deadline or room < smallest:
                left += tasks[index:]
                break
            page = functools.partial(self._fan_out_page, report=report, size=min(page_size, room))
            moved = self._guarded(task, page)
            if moved is not None:
                progressed = True
                if not moved.fanout.done and self._clock() < moved.end:
                    left.append(moved)
        return progressed, left

    def _fan_out_page(
        self, task: SendingTask, report: DispatchReport, size: int | None = None
    ) -> SendingTask:
        parts = audience_parts(task.codes, task.tags)
        index = task.fanout.part
        part = parts[index]
        tags = task.tags if part.kind == "code" else ()
        recipients, cursor = self._audience.page(
            part, task.fanout.cursor, tags, size or self._settings.fanout_page_size
        )
        report.enqueued += self._enqueue(task, recipients)
        last_part = index + 1 >= len(parts)
        if cursor is None and last_part:
            log.info("fan-out complete")
        return self._tasks.advance_fanout(
            task,
            part=index if cursor is not None or last_part else index + 1,
            cursor=cursor,
            done=cursor is None and last_part,
            now=self._clock(),
        )

    def _enqueue(self, task: SendingTask, recipients: list[Recipient]) -> int:
        """Create the page's messages and queue a job for each one still to be queued."""
        if not recipients:
            return 0
        now = self._clock()
        page = self._messages.create(task.id, recipients, now)
        to_send = list(page.created)
        if page.existing:
            # Another run wrote these: a concurrent one (their jobs are queued) or one that
            # died (they have none). Watch them rather than queue a second copy now.
            states = self._messages.states(task.id, [r.client_id for r in page.existing])
            watches = [
                verdict
                for state in states.values()
                if isinstance(
                    verdict := lifecycle.watch(state, ms(now), end=task.end, timing=self._timing),
                    lifecycle.Change,
                )
            ]
            self._messages.apply(task.id, watches, now)
        jobs = [
            SendJob(
                message_id=message_id(task.id, recipient.client_id),
                task_id=task.id,
                client_id=recipient.client_id,
                phone=recipient.phone,
                utc=recipient.utc,
            )
            for recipient in to_send
        ]
        self._queue.send(jobs)
        log.info(
            "fan-out page",
            extra={
                "messages_created": len(page.created),
                "messages_existing": len(page.existing),
                "jobs_enqueued": len(jobs),
            },
        )
        return len(jobs)


def _job(task_id: int, recipient: Recipient, decision: Decision) -> SendJob:
    after = decision.change.after
    return SendJob(
        message_id=message_id(task_id, recipient.client_id),
        task_id=task_id,
        client_id=recipient.client_id,
        phone=recipient.phone,
        utc=recipient.utc,
        attempt=after.attempts,
        not_before_ms=after.not_before_ms,
        generation=after.generation,
    )
