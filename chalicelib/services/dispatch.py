"""The dispatcher: starts due tasks, has their audience fanned out to the queue
(``chalicelib/services/fanout.py``), wakes waiting messages, and finishes tasks.

Runs on the schedule (every minute in AWS), on ``POST /api/tasks/process``, and right
after a due task is created or updated. Every run is bounded by a time budget and
resumable: the segments' checkpoints say which page comes next, messages are created
with conditional writes, and a checkpoint only moves forward from where it was read, so
a crash or a timeout resumes with no duplicate and no gap.

Tasks share the senders fairly: the queue is kept shallow (the fan-out's pages fill the
room left under ``queue_ahead_limit``, never more), and due tasks take turns, one page
each, the task served longest ago first, so a small task is never stuck behind a large
one. Only the scheduled run waits for the queue to drain; a run started
by the API never waits.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import datetime

from chalicelib import logs
from chalicelib.clock import Clock
from chalicelib.domain import lifecycle
from chalicelib.domain.lifecycle import Decision, ms
from chalicelib.domain.tasks import SendingTask, TaskStatus
from chalicelib.ports import (
    Audience,
    FanoutQueue,
    FanoutSegments,
    JobQueue,
    MessageRepository,
    RateLimiter,
    Recipient,
    StaleTask,
    TaskGone,
    TaskRepository,
)
from chalicelib.services.fanout import DispatchReport, FanOut, emit, expiry, send_job
from chalicelib.settings import Settings

log = logs.get_logger("dispatch")

QUEUE_FULL_PAUSE = 0.2  # a look at the queue depth costs one cheap request
# How often a run looks for newly due tasks (a consistent read of each).
DUE_LOOK_SECONDS = 5.0
# Pages of waiting messages one task may wake in one run (the next run goes on).
WAKE_PAGES = 10


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
        segments: FanoutSegments,
        fanout_queue: FanoutQueue,
        timing: lifecycle.Timing,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        feed: RateLimiter | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._tasks = tasks
        self._messages = messages
        self._queue = queue
        self._timing = timing
        self._sleep = sleep
        self._monotonic = monotonic
        # The fan-out's pages: the dispatcher queues a first page, and the schedule's
        # pages in turn; the workers (``app.fan_out``) the rest.
        self.fanout = FanOut(
            settings,
            clock,
            tasks=tasks,
            messages=messages,
            audience=audience,
            queue=queue,
            segments=segments,
            fanout_queue=fanout_queue,
            timing=timing,
            monotonic=monotonic,
            feed=feed,
        )

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
        emit(report, self._settings.stage, "dispatch run")
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
        if task is None:
            return report
        deadline = self._monotonic() + self._settings.api_dispatch_budget_seconds
        if task.status is TaskStatus.CANCELLED:
            # A page of its pending messages cancelled within the request; the schedule
            # does the rest.
            report.tasks = 1
            with logs.bind(task_id=task_id):
                self._guarded(
                    task,
                    lambda t: self._wind_up(t, now, deadline, report, cancelled=True, pages=1),
                )
            return report
        if task.status is TaskStatus.PAUSED or task.start > now or now >= task.end:
            return report
        report.tasks = 1
        with logs.bind(task_id=task_id):
            started = self._guarded(task, lambda t: self._start(t, now, report))
            if started is not None and started.rejudge:
                # A new window or end, or a resume: waiting messages are judged by it now,
                # a page of them within the request; the schedule wakes the rest. The
                # segments a pause stopped get their workers back at once.
                self._guarded(started, lambda t: self._wake(t, now, deadline, report, pages=1))
                self._guarded(started, self.fanout.requeue_segments)
                if started.fanout.done:
                    # Nothing left to send (all final before a pause): finished now, as
                    # its messages say, rather than at the next run.
                    self._guarded(started, lambda t: self._finish_now(t, report))
            if started is not None and not started.fanout.done:
                page = functools.partial(
                    self.fanout.inline_page, report=report, size=self._settings.fanout_page_size
                )
                self._guarded(started, page)
        return report

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
        """Everything a due task needs once a run, except its fan-out pages. A cancelled
        task has its pending messages cancelled; a paused one waits (its jobs that arrive
        hold their messages) until a resume or its end."""
        if task.status is TaskStatus.CANCELLED:
            self._wind_up(task, now, deadline, report, cancelled=True)
            return None
        if now >= task.end:
            self._wind_up(task, now, deadline, report)
            return None
        if task.status is TaskStatus.PAUSED:
            return None
        task = self._start(task, now, report)
        task = self.fanout.plan(task, now)
        self._wake(task, now, deadline, report)
        if not task.fanout.done:
            task = self.fanout.watch(task, now)
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
        self,
        task: SendingTask,
        now: datetime,
        deadline: float,
        report: DispatchReport,
        *,
        cancelled: bool = False,
        pages: int | None = None,
    ) -> None:
        """The end has passed: expire every pending message no live sender holds (those
        are waited for), then finish. For a cancelled task, cancel them, then close it
        (it stays ``cancelled``)."""
        now_ms = ms(now)
        cursor: str | None = None
        in_flight = 0
        sweep = lifecycle.sweep_cancelled if cancelled else lifecycle.sweep
        while self._monotonic() < deadline and (pages is None or pages > 0):
            pages = None if pages is None else pages - 1
            states, cursor = self._messages.pending(
                task.id, cursor=cursor, limit=self._settings.fanout_page_size
            )
            changes = []
            for state in states:
                verdict = sweep(state, now_ms)
                if isinstance(verdict, lifecycle.Change):
                    changes.append(verdict)
                else:
                    in_flight += 1
            expires_at = expiry(self._settings, task)
            swept = len(self._messages.apply(task.id, changes, now, expires_at=expires_at))
            if cancelled:
                report.cancelled += swept
            else:
                report.expired += swept
            if cursor is None:
                break
        if in_flight:
            log.info("waiting for provider calls in flight", extra={"in_flight": in_flight})
        final = TaskStatus.CANCELLED if cancelled else TaskStatus.FINISHED
        if not self._finish_if_final(task, report, final):
            report.incomplete.append(task.id)

    def _finish_now(self, task: SendingTask, report: DispatchReport) -> SendingTask | None:
        return None if self._finish_if_final(task, report) else task

    def _finish_if_final(
        self, task: SendingTask, report: DispatchReport, final: TaskStatus = TaskStatus.FINISHED
    ) -> bool:
        """Finish (or close, cancelled) the task when none of its messages is pending."""
        counts = self._messages.counts([task.id])[task.id]
        # The counts follow the messages' stream a moment behind: none pending by them is
        # checked against the messages themselves (once a task, as a rule).
        if counts.pending or self._messages.has_pending(task.id):
            return False
        self._tasks.set_status(task, final, self._clock())
        report.finished += 1
        log.info(
            "task finished" if final is TaskStatus.FINISHED else "cancelled task closed",
            extra={"messages": counts.by_status(), "total": counts.total},
        )
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
            written = self._messages.apply(
                task.id,
                [d.change for _, d in decided],
                now,
                expires_at=expiry(self._settings, task),
            )
            jobs = [
                send_job(task.id, recipient, decision)
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
        any page was queued, and the tasks with pages still to queue (as they are now; a
        task changed by someone else waits for the next look)."""
        progressed = False
        left: list[SendingTask] = []
        for index, task in enumerate(tasks):
            size = self.fanout.room()
            if self._monotonic() >= deadline or size is None:
                left += tasks[index:]
                break
            page = functools.partial(self.fanout.inline_page, report=report, size=size)
            moved = self._guarded(task, page)
            if moved is not None:
                progressed = True
                if not moved.fanout.done and self._clock() < moved.end:
                    left.append(moved)
        return progressed, left
