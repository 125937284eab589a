"""The fan-out: a due task's audience cut into segments (``chalicelib/domain/fanout.py``),
each paged into the send queue by a worker holding it under a lease (``app.fan_out``), or
a first page by the dispatcher itself (``chalicelib/services/dispatch.py``).

A page creates its messages with conditional writes and queues a job for each new one;
the segment's checkpoint only moves forward from where it was read, so a crash or a
timeout resumes with no duplicate and no gap. The send queue is kept shallow (at most
``queue_ahead_limit`` jobs ready to be received: a page fills the room left, never more),
and a rate-limited task's jobs are queued delayed to their turns at its rate.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from chalicelib import logs, metrics
from chalicelib.clock import Clock
from chalicelib.domain import fanout, lifecycle
from chalicelib.domain.fanout import Segment, SegmentState
from chalicelib.domain.lifecycle import Decision, ms
from chalicelib.domain.messages import message_id
from chalicelib.domain.ratelimit import RateScope, Reservation, feed_key
from chalicelib.domain.tasks import SendingTask, TaskStatus
from chalicelib.ports import (
    Audience,
    FanoutQueue,
    FanoutSegments,
    JobQueue,
    MessageRepository,
    RateLimiter,
    Recipient,
    StaleSegment,
    StaleTask,
    TaskGone,
    TaskRepository,
    audience_parts,
)
from chalicelib.queue import FanoutJob, SendJob
from chalicelib.settings import Settings

log = logs.get_logger("dispatch")  # one logger for the whole engine's runs

# A rate-limited task's fan-out queues its jobs delayed to their turn at its rate, at
# most this far ahead (a scope ``feed#<task>`` of the rate limiter with this horizon).
FEED_AHEAD = timedelta(seconds=30)
# ... and, once that far ahead, waits until this much of its turns are free again: a
# page per turn or two would cost a task read, a query, a batch write and a checkpoint
# for each message (docs/performance.md, "Rate-limited fan-out").
FEED_REFILL = timedelta(seconds=5)


@dataclass
class DispatchReport:
    """What one run did: of the dispatcher, or of a fan-out worker."""

    tasks: int = 0
    started: int = 0
    enqueued: int = 0
    expired: int = 0
    cancelled: int = 0
    finished: int = 0
    woken: int = 0
    incomplete: list[int] = field(default_factory=list)  # out of budget, resumes next run


def emit(report: DispatchReport, stage: str, what: str) -> None:
    """A run's figures: EMF metrics and one log line."""
    metrics.emit(
        {
            "TasksStarted": report.started,
            "TasksFinished": report.finished,
            "MessagesEnqueued": report.enqueued,
            "MessagesExpired": report.expired,
            "MessagesCancelled": report.cancelled,
        },
        {},
        stage,
    )
    log.info(
        what,
        extra={
            "tasks": report.tasks,
            "started": report.started,
            "enqueued": report.enqueued,
            "woken": report.woken,
            "expired": report.expired,
            "cancelled": report.cancelled,
            "finished": report.finished,
            "incomplete": report.incomplete,
        },
    )


def expiry(settings: Settings, task: SendingTask) -> datetime:
    """A message's TTL stamp, from its task's end (chalicelib/domain/retention.py)."""
    return settings.retention().message_expiry(task.end)


class FanOut:
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
        monotonic: Callable[[], float] = time.monotonic,
        feed: RateLimiter | None = None,
    ) -> None:
        self._settings = settings
        self._feed_limiter = feed
        self._clock = clock
        self._tasks = tasks
        self._messages = messages
        self._audience = audience
        self._queue = queue
        self._segments = segments
        self._fanout_queue = fanout_queue
        self._timing = timing
        self._monotonic = monotonic

    def segments_of(self, task: SendingTask) -> list[Segment]:
        parts = len(audience_parts(task.codes, task.tags))
        return fanout.plan(parts, task.fanout.max_id, task.fanout.ranks)

    def all_done(self, task: SendingTask, states: dict[int, SegmentState]) -> bool:
        return all(
            index in states and states[index].done for index in range(len(self.segments_of(task)))
        )

    def plan(self, task: SendingTask, now: datetime) -> SendingTask:
        """Cut the audience into segments, once, and queue a worker's job for each."""
        if task.fanout.planned or task.fanout.done:
            return task
        max_id = self._audience.max_client_id()
        ranks = fanout.ranks_for(
            max_id,
            clients_per_segment=self._settings.fanout_segment_clients,
            max_ranks=self._settings.fanout_max_ranks,
        )
        task = self._tasks.plan_fanout(task, max_id=max_id, ranks=ranks, now=now)
        segments = self.segments_of(task)
        self._fanout_queue.send([FanoutJob(task.id, segment.index) for segment in segments])
        log.info("fan-out planned", extra={"segments": len(segments), "max_client_id": max_id})
        return task

    def watch(self, task: SendingTask, now: datetime) -> SendingTask:
        """Once a run: the fan-out is done when every segment is; a segment nobody holds
        that has not moved for ``fanout_stall_seconds`` gets a job again (its job was
        lost, or its worker died before queueing the next)."""
        segments = self.segments_of(task)
        states = self._segments.states(task.id, [segment.index for segment in segments])
        if self.all_done(task, states):
            log.info("fan-out complete")
            return self._tasks.finish_fanout(task, now)
        now_ms, stall = ms(now), self._settings.fanout_stall_seconds * 1000
        stalled = []
        for segment in segments:
            state = states.get(segment.index)
            since = task.fanout_at_ms if state is None else state.updated_ms
            if (state is None or (not state.done and state.free(now_ms))) and (
                now_ms - since > stall
            ):
                stalled.append(segment.index)
        if stalled:
            self._fanout_queue.send([FanoutJob(task.id, index) for index in stalled])
            log.info("fan-out segments queued again", extra={"segments": stalled})
        return task

    def requeue_segments(self, task: SendingTask) -> SendingTask:
        """A job for each segment not done and held by nobody (a pause let it go)."""
        if not task.fanout.planned or task.fanout.done:
            return task
        segments = self.segments_of(task)
        states = self._segments.states(task.id, [segment.index for segment in segments])
        now_ms = ms(self._clock())
        free = [
            segment.index
            for segment in segments
            if (state := states.get(segment.index)) is None
            or (not state.done and state.free(now_ms))
        ]
        if free:
            self._fanout_queue.send([FanoutJob(task.id, index) for index in free])
        return task

    def run_body(self, body: str, budget_seconds: float) -> DispatchReport:
        """A fan-out queue record: a job that is not one of ours is logged and dropped
        (nothing can make it work)."""
        try:
            job = FanoutJob.from_body(body)
        except ValueError:
            log.error("fan-out job dropped: not one of ours")
            return DispatchReport()
        return self.run_segment(job, budget_seconds)

    def run_segment(self, job: FanoutJob, budget_seconds: float) -> DispatchReport:
        """A fan-out worker (``app.fan_out``): hold the job's segment and queue its pages
        while the send queue has room and the budget lasts; then let it go and queue the
        segment's next job (after ``fanout_wait_seconds`` when the queue was full). A
        segment someone else holds, or done, ends the job at once."""
        report = DispatchReport()
        deadline = self._monotonic() + budget_seconds
        with logs.bind(task_id=job.task_id, segment=job.segment):
            task = self._tasks.get(job.task_id)
            if task is None or task.fanout.done or not task.fanout.planned or _held(task):
                return report
            segments = self.segments_of(task)
            if job.segment >= len(segments) or self._clock() >= task.end:
                return report
            segment = segments[job.segment]
            held = self._claim(task, segment, ms(self._clock()))
            if held is None:
                return report
            report.tasks = 1
            try:
                self._hold_segment(task, segment, held, deadline, report)
            except (TaskGone, StaleTask):
                # Deleted meanwhile (nothing more for it), or its fan-out's end was written
                # by someone else (the schedule reads the task again).
                log.info("task deleted or changed during fan-out")
            except StaleSegment:
                log.info("fan-out segment taken over by another worker")
        emit(report, self._settings.stage, "fan-out run")
        return report

    def _claim(self, task: SendingTask, segment: Segment, now_ms: int) -> SegmentState | None:
        """Hold the segment for a lease under a new owner's name, if nobody holds it."""
        return self._segments.claim(
            task.id,
            segment.index,
            owner=uuid.uuid4().hex,
            until_ms=now_ms + self._settings.fanout_lease_seconds * 1000,
            now_ms=now_ms,
        )

    def _hold_segment(
        self,
        task: SendingTask,
        segment: Segment,
        state: SegmentState,
        deadline: float,
        report: DispatchReport,
    ) -> None:
        """Pages of a held segment until it is done, the task ends, the queue is full, or
        time is up (the budget, or half the lease: the lease must outlast a page)."""
        lease_ms = self._settings.fanout_lease_seconds * 1000
        stop_at = min(deadline, self._monotonic() + self._settings.fanout_lease_seconds / 2)
        while not state.done and self._clock() < task.end:
            task = self._current(task)
            if _held(task):
                self._let_go(task, state)  # a resume queues its job again
                return
            size = self.room()
            if size is None or self._monotonic() >= stop_at:
                self._let_go(task, state)
                delay = self._settings.fanout_wait_seconds if size is None else 0
                self._fanout_queue.send([FanoutJob(task.id, segment.index)], delay)
                report.incomplete.append(task.id)
                return
            turns = self._feed(task, size)
            if turns is not None and not turns.slots:
                # Rate-limited, and FEED_AHEAD of its jobs are queued: back when not.
                self._let_go(task, state)
                wait = ((turns.retry_at or self._clock()) - self._clock()).total_seconds()
                self._fanout_queue.send([FanoutJob(task.id, segment.index)], max(wait, 1.0))
                report.incomplete.append(task.id)
                return
            state = self._segment_page(
                task, segment, state, size, report, hold_ms=lease_ms, turns=turns
            )
        if state.done:
            log.info("fan-out segment done")
            self._finish_if_done(task)
        else:
            self._let_go(task, state)  # the end passed: the sweep expires what is left

    def _current(self, task: SendingTask) -> SendingTask:
        """The task read again before a page: a pause, a cancel or a delete stops its
        fan-out within a page (TaskGone when it was deleted)."""
        fresh = self._tasks.get(task.id)
        if fresh is None:
            raise TaskGone
        return fresh

    def _feed(self, task: SendingTask, size: int) -> Reservation | None:
        """A rate-limited task's fan-out feeds the send queue at the task's rate: a page
        takes turns (``feed#<task>``, a scope of the rate limiter looking FEED_AHEAD
        ahead, shared by every worker of the task) and queues each job delayed to its
        turn. Else the queue would fill with jobs the limit holds back, ahead of every
        other task's. Once FEED_AHEAD is taken, none until FEED_REFILL of turns (or a
        whole page) are free again. None: no limit of its own (or no feed)."""
        if task.rate_limit is None or self._feed_limiter is None:
            return None
        scope = RateScope(feed_key(task.id), task.rate_limit)
        refill = math.ceil(task.rate_limit * FEED_REFILL.total_seconds())
        try:
            return self._feed_limiter.reserve(
                [scope], size, self._clock(), at_least=min(size, refill)
            )
        except Exception:
            log.exception("could not take the fan-out's turns; it goes on unpaced")
            return None

    def _let_go(self, task: SendingTask, state: SegmentState) -> None:
        now_ms = ms(self._clock())
        self._segments.advance(
            task.id, state, cursor=state.cursor, done=False, until_ms=0, now_ms=now_ms
        )

    def room(self) -> int | None:
        """How many jobs a page may queue now: the room left under the queue's limit (a
        page that overshot it put a whole page ahead of every task started after it);
        None while that room is under half the limit (or a whole page), so pages stay
        large."""
        limit, page_size = self._settings.queue_ahead_limit, self._settings.fanout_page_size
        room = limit - self._queue.depth()
        return min(page_size, room) if room >= min(page_size, max(1, limit // 2)) else None

    def _segment_page(
        self,
        task: SendingTask,
        segment: Segment,
        state: SegmentState,
        size: int,
        report: DispatchReport,
        *,
        hold_ms: int,
        turns: Reservation | None = None,
    ) -> SegmentState:
        """One page of the segment: its messages created and queued (delayed to their
        ``turns``, if rate-limited: a page as long as the turns), then the checkpoint
        moved (with the lease renewed by ``hold_ms``, or let go with 0)."""
        part = audience_parts(task.codes, task.tags)[segment.part]
        tags = task.tags if part.kind == "code" else ()
        if turns is not None:
            size = min(size, len(turns.slots))
        recipients, cursor = self._audience.page(part, segment, state.cursor, tags, size)
        report.enqueued += self._enqueue(task, recipients, turns.slots if turns else ())
        now_ms = ms(self._clock())
        return self._segments.advance(
            task.id,
            state,
            cursor=cursor,
            done=cursor is None,
            until_ms=now_ms + hold_ms if cursor is not None and hold_ms else 0,
            now_ms=now_ms,
        )

    def _finish_if_done(self, task: SendingTask) -> SendingTask:
        segments = self.segments_of(task)
        states = self._segments.states(task.id, [segment.index for segment in segments])
        if self.all_done(task, states):
            log.info("fan-out complete")
            return self._tasks.finish_fanout(task, self._clock())
        return task

    def inline_page(
        self, task: SendingTask, report: DispatchReport, size: int
    ) -> SendingTask | None:
        """One page of the first segment nobody holds, by the dispatcher itself (the
        schedule is one more worker, and the API's start queues a first page at once).
        A segment found empty (a code's clients may all lie in a later id range) does not
        count as the page: the next free one is paged, so that a first page queues
        messages whenever the audience has any. None when every segment left is held."""
        now = self._clock()
        task = self._current(task)
        if _held(task):
            return None
        task = self.plan(task, now)
        segments = self.segments_of(task)
        states = self._segments.states(task.id, [segment.index for segment in segments])
        now_ms = ms(now)
        for segment in segments:
            state = states.get(segment.index, SegmentState(segment.index))
            if state.done or not state.free(now_ms):
                continue
            held = self._claim(task, segment, now_ms)
            if held is None:
                continue
            turns = self._feed(task, size)  # taken once a segment is held: none lost
            if turns is not None and not turns.slots:
                self._let_go(task, held)
                return None  # FEED_AHEAD of its jobs are queued: its workers come back later
            queued = report.enqueued
            try:
                after = self._segment_page(
                    task, segment, held, size, report, hold_ms=0, turns=turns
                )
            except StaleSegment:
                return None
            if after.done and report.enqueued == queued:
                states[segment.index] = after
                continue  # an empty segment: on to the next
            return self._finish_if_done(task) if after.done else task
        if self.all_done(task, states):
            log.info("fan-out complete")
            return self._tasks.finish_fanout(task, now)
        return None

    def _enqueue(
        self, task: SendingTask, recipients: list[Recipient], turns: Sequence[datetime] = ()
    ) -> int:
        """Create the page's messages and queue a job for each one still to be queued
        (delayed to its turn, when ``turns`` are given)."""
        if not recipients:
            return 0
        now = self._clock()
        page = self._messages.create(
            task.id, recipients, now, expires_at=expiry(self._settings, task)
        )
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
        turn_of = {r.client_id: ms(turn) for r, turn in zip(recipients, turns, strict=False)}
        jobs = [
            SendJob(
                message_id=message_id(task.id, recipient.client_id),
                task_id=task.id,
                client_id=recipient.client_id,
                phone=recipient.phone,
                utc=recipient.utc,
                not_before_ms=turn_of.get(recipient.client_id),
            )
            for recipient in to_send
        ]
        # A job with a turn is delayed to it (the queue's delay from not_before_ms).
        self._queue.send(jobs, now_ms=ms(now))
        log.info(
            "fan-out page",
            extra={
                "messages_created": len(page.created),
                "messages_existing": len(page.existing),
                "jobs_enqueued": len(jobs),
            },
        )
        return len(jobs)


def _held(task: SendingTask) -> bool:
    """Paused or cancelled: no fan-out page for it."""
    return task.status in (TaskStatus.PAUSED, TaskStatus.CANCELLED)


def send_job(task_id: int, recipient: Recipient, decision: Decision) -> SendJob:
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
