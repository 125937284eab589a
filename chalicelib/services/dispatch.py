"""The dispatcher: starts due tasks, fans their audience out to the queue, finishes them.

Runs on the schedule (every minute in AWS), on ``POST /api/tasks/process``, and right
after a due task is created or updated. Every run is bounded by a time budget and
resumable: the fan-out checkpoint on the task says which page comes next, messages are
created with conditional writes, and the checkpoint only moves forward from where it
was read, so a crash or a timeout resumes with no duplicate and no gap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from chalicelib import logs, metrics
from chalicelib.clock import Clock
from chalicelib.domain.messages import MessageStatus, message_id
from chalicelib.domain.tasks import TaskStatus
from chalicelib.queue import SendJob, SendQueue
from chalicelib.settings import Settings
from chalicelib.storage import messages as message_store
from chalicelib.storage import tasks as task_store
from chalicelib.storage.models import ClientModel, TaskModel, tag_key
from chalicelib.storage.pagination import KeySchema, decode_cursor, encode_cursor

log = logs.get_logger("dispatch")

ALL_KEY: KeySchema = {"id": "N"}
CODE_KEY: KeySchema = {"id": "N", "code": "S"}
TAG_KEY: KeySchema = {"id": "N", "tag_key": "S"}
# How long to let in-flight provider calls land before pending messages are expired.
SWEEP_GRACE = timedelta(seconds=30)
QUEUE_FULL_PAUSE = 0.5


@dataclass
class DispatchReport:
    tasks: int = 0
    started: int = 0
    enqueued: int = 0
    expired: int = 0
    finished: int = 0
    woken: int = 0
    incomplete: list[int] = field(default_factory=list)  # out of budget, resumes next run


@dataclass(frozen=True)
class AudiencePart:
    """One index partition of a task's audience: a code, a tag, or everyone."""

    kind: str
    value: str | None


def audience_parts(codes: list[str], tags: list[str]) -> list[AudiencePart]:
    # codes OR-ed, tags OR-ed, the two AND-ed: with codes, walk each code's partition and
    # keep the listed tags; with tags only, walk each tag's; with neither, everyone.
    if codes:
        return [AudiencePart("code", code) for code in sorted(set(codes))]
    if tags:
        return [AudiencePart("tag", tag) for tag in sorted(set(tags))]
    return [AudiencePart("all", None)]


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        queue: SendQueue,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._queue = queue
        self._sleep = sleep
        self._monotonic = monotonic

    # --- entry points -----------------------------------------------------------------

    def dispatch_due(self, budget_seconds: float) -> DispatchReport:
        """Advance every due task (the schedule and ``POST /api/tasks/process``)."""
        deadline = self._monotonic() + budget_seconds
        report = DispatchReport()
        for task in list(task_store.find_due(self._clock())):
            report.tasks += 1
            self._advance(task, deadline, report)
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
                "expired": report.expired,
                "finished": report.finished,
                "incomplete": report.incomplete,
            },
        )
        return report

    def start_task(self, task_id: int, budget_seconds: float) -> DispatchReport:
        """Begin a task that just became due, without waiting for the schedule."""
        report = DispatchReport()
        task = task_store.get(task_id)
        if task is not None and task.start_time <= self._clock():
            report.tasks = 1
            self._advance(task, self._monotonic() + budget_seconds, report)
        return report

    # --- one task ---------------------------------------------------------------------

    def _advance(self, task: TaskModel, deadline: float, report: DispatchReport) -> None:
        task_id = int(task.id)
        with logs.bind(task_id=task_id):
            try:
                self._advance_task(task, deadline, report)
            except message_store.TaskGone:
                log.info("task deleted during dispatch")
            except task_store.StaleTask:
                log.info("task changed during dispatch; the next run resumes it")
                report.incomplete.append(task_id)

    def _advance_task(self, task: TaskModel, deadline: float, report: DispatchReport) -> None:
        now = self._clock()
        if now >= task.end_time:
            self._wind_up(task, now, deadline, report)
            return
        if task.status == TaskStatus.SCHEDULED.value:
            task_store.set_status(task, TaskStatus.RUNNING, now=now)
            report.started += 1
            log.info("task started")
        if not task.fanout_done:
            self._fan_out(task, deadline, report)
        self._wake_parked(task, now, deadline, report)
        if task.fanout_done:
            self._finish_if_final(task, report)

    def _wind_up(
        self, task: TaskModel, now: datetime, deadline: float, report: DispatchReport
    ) -> None:
        """The end has passed: expire what is still pending, then finish."""
        if now < task.end_time + SWEEP_GRACE:
            return  # let provider calls that began before the end record their outcome
        task_id = int(task.id)
        while self._monotonic() < deadline:
            expired = message_store.expire_pending(task_id, now)
            report.expired += expired
            if expired == 0:
                break
        if not self._finish_if_final(task, report):
            report.incomplete.append(task_id)

    def _finish_if_final(self, task: TaskModel, report: DispatchReport) -> bool:
        """Finish the task when none of its messages is pending any more."""
        counts = message_store.counts([int(task.id)])[int(task.id)]
        if counts.pending:
            return False
        task_store.set_status(task, TaskStatus.FINISHED, now=self._clock())
        report.finished += 1
        log.info("task finished", extra={"messages": counts.by_status(), "total": counts.total})
        return True

    # --- send windows -----------------------------------------------------------------

    def _wake_parked(
        self, task: TaskModel, now: datetime, deadline: float, report: DispatchReport
    ) -> None:
        """Queue the parked messages whose window opens before the next run.

        After a change of the task's window (``wake_all``), every parked message is
        woken so that the sender judges it by the new window.
        """
        task_id = int(task.id)
        wake_all = bool(task.wake_all)
        horizon = now + timedelta(seconds=self._settings.wake_lead_seconds)
        while self._monotonic() < deadline:
            batch = message_store.parked(
                task_id,
                wake_before_ms=None if wake_all else _ms(horizon),
                limit=self._settings.fanout_page_size,
            )
            if not batch:
                if wake_all:
                    task_store.clear_wake_all(task)
                return
            jobs = []
            for message in batch:
                generation, wake_ms = int(message.job_gen or 0), int(message.wake_ms)
                if not message_store.unpark(message):
                    continue  # changed meanwhile (sent, expired, or woken by another run)
                jobs.append(
                    SendJob(
                        message_id=int(message.id),
                        task_id=task_id,
                        client_id=int(message.client_id),
                        phone=str(message.phone),
                        utc=str(message.utc),
                        attempt=int(message.attempts or 0),
                        not_before_ms=None if wake_all else wake_ms,
                        generation=generation + 1,
                    )
                )
            self._queue.send(jobs, now_ms=_ms(now))
            report.woken += len(jobs)
            log.info("parked messages woken", extra={"woken": len(jobs), "wake_all": wake_all})
        report.incomplete.append(task_id)

    # --- fan-out ----------------------------------------------------------------------

    def _fan_out(self, task: TaskModel, deadline: float, report: DispatchReport) -> None:
        parts = audience_parts(
            [str(c) for c in task.filter_codes], [str(t) for t in task.filter_tags]
        )
        tag_keys = [tag_key(str(tag)) for tag in task.filter_tags]
        while not task.fanout_done:
            if self._monotonic() >= deadline:
                report.incomplete.append(int(task.id))
                return
            if self._queue.depth() >= self._settings.queue_ahead_limit:
                # The senders are behind: let them catch up rather than flood the queue.
                if self._monotonic() + QUEUE_FULL_PAUSE >= deadline:
                    report.incomplete.append(int(task.id))
                    return
                self._sleep(QUEUE_FULL_PAUSE)
                continue
            part_index = int(task.fanout_part)
            part = parts[part_index]
            clients, cursor = self._read_page(part, task.fanout_cursor, tag_keys)
            report.enqueued += self._enqueue(task, clients)
            if cursor is None and part_index + 1 >= len(parts):
                task_store.advance_fanout(
                    task, part=part_index, cursor=None, done=True, now=self._clock()
                )
                log.info("fan-out complete")
            elif cursor is None:
                task_store.advance_fanout(
                    task, part=part_index + 1, cursor=None, done=False, now=self._clock()
                )
            else:
                task_store.advance_fanout(
                    task, part=part_index, cursor=cursor, done=False, now=self._clock()
                )

    def _read_page(
        self, part: AudiencePart, cursor: str | None, tag_keys: list[str]
    ) -> tuple[list[ClientModel], str | None]:
        """One DynamoDB page of the partition from ``cursor``: the matching clients in it
        and the cursor after it (None at the partition's end).

        Exactly one page is read, so a rare tag inside a large code partition costs a
        bounded amount of work per call instead of a walk of the whole partition.
        """
        size = self._settings.fanout_page_size
        if part.kind == "code":
            schema = CODE_KEY
            condition = ClientModel.tag_key.is_in(*tag_keys) if tag_keys else None
            results = ClientModel.by_code.query(
                part.value,
                filter_condition=condition,
                last_evaluated_key=decode_cursor(cursor, schema),
                page_size=size,
            )
        elif part.kind == "tag":
            schema = TAG_KEY
            results = ClientModel.by_tag.query(
                tag_key(part.value or ""),
                last_evaluated_key=decode_cursor(cursor, schema),
                page_size=size,
            )
        else:
            # Everyone is the audience: walking the whole table is the point.
            schema = ALL_KEY
            results = ClientModel.scan(
                last_evaluated_key=decode_cursor(cursor, schema), page_size=size
            )
        raw_page = next(results.page_iter, None) or {}
        clients = [ClientModel.from_raw_data(item) for item in raw_page.get("Items", [])]
        after = results.page_iter.last_evaluated_key
        return clients, encode_cursor(after) if after else None

    def _enqueue(self, task: TaskModel, clients: list[ClientModel]) -> int:
        """Create the page's messages and queue a job for each one still pending."""
        if not clients:
            return 0
        task_id = int(task.id)
        page = message_store.create_messages(task_id, clients, self._clock())
        to_send = list(page.created)
        if page.existing:
            # An interrupted run wrote these: queue again only those not yet final.
            states = message_store.get_many(task_id, (int(c.id) for c in page.existing))
            to_send += [
                client
                for client in page.existing
                if (m := states.get(int(client.id))) is not None
                and m.status == MessageStatus.PENDING.value
            ]
        jobs = [
            SendJob(
                message_id=message_id(task_id, int(client.id)),
                task_id=task_id,
                client_id=int(client.id),
                phone=client.phone,
                utc=client.utc,
            )
            for client in to_send
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


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
