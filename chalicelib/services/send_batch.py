"""One sender batch's pieces: its records and result, the jobs it holds, the tasks it
read (and reads again before a call), the window a job waits for, and the one log line
each job that is not sent gets. The flow that uses them is ``sending.py``.

Why not Powertools' batch utilities (``BatchProcessor``, ``process_partial_response``),
measured for issue 16: they call a handler per record and report the records whose call
raised. The sender judges a batch as a whole: the copies of one message in a batch are
compared (the newest generation goes on, the others stop), the batch's tasks and
messages are read together, decisions and outcomes are written per task in one request,
and the provider calls run in parallel; a record fails when its own job is unreadable
or when the read or write it shared fails. Record by record, every job would pay its own
reads and writes (1.81 AWS requests per message today) and run its call alone; fed the
sender's result afterwards, the processor would only rebuild ``{"batchItemFailures":
[...]}``, one line in ``app.py``, for 185 M more instructions under callgrind (+11.5 % of
what the sender imports for its first event): it imports asyncio and the event classes
of every source it supports.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from chalicelib import logs
from chalicelib.clock import Clock
from chalicelib.domain import lifecycle
from chalicelib.domain.clients import parse_utc
from chalicelib.domain.lifecycle import Change, Decision, MessageState, Step
from chalicelib.domain.tasks import SendingTask, SendWindow, TaskStatus
from chalicelib.domain.windows import next_opening
from chalicelib.ports import StopList, TaskRepository
from chalicelib.queue import SendJob

log = logs.get_logger("sender")


@dataclass(frozen=True)
class Record:
    """One SQS record: its id (for batchItemFailures) and body."""

    record_id: str
    body: str


@dataclass
class BatchResult:
    failed_record_ids: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    provider_latencies_ms: list[float] = field(default_factory=list)
    dispatch_lags_s: list[float] = field(default_factory=list)

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


@dataclass(frozen=True)
class Job:
    record: Record
    job: SendJob


@dataclass(frozen=True)
class Claimed:
    """A message this copy holds for a provider call."""

    item: Job
    state: MessageState  # as claimed
    slot: datetime | None = None  # when its rate limits let it call (None: no limit)


@dataclass(frozen=True)
class Answered:
    item: Job
    decision: Decision | None  # None: nothing to record (the task was deleted)


class BatchTasks:
    """The batch's tasks, read once and read again when older than ``max_age``."""

    def __init__(self, repo: TaskRepository, clock: Clock, max_age: timedelta) -> None:
        self._repo = repo
        self._clock = clock
        self._max_age = max_age
        self._lock = threading.Lock()
        self._read: dict[int, tuple[SendingTask | None, datetime]] = {}

    def load(self, task_ids: Iterable[int]) -> None:
        for task_id in task_ids:
            self.fresh(task_id)

    def get(self, task_id: int) -> SendingTask | None:
        return self._read[task_id][0]

    def fresh(self, task_id: int) -> SendingTask | None:
        """The task as read at most ``max_age`` ago (the age counts from before the read)."""
        with self._lock:
            now = self._clock()
            known = self._read.get(task_id)
            if known is None or now - known[1] > self._max_age:
                known = (self._repo.get(task_id), now)
                self._read[task_id] = known
            return known[0]


class BatchStops:
    """The stop list as the batch's phones are on it: read for the whole batch at once
    (one request), and a phone read again right before its call when the batch's read
    is older than ``max_age`` (SPEC: the stop list is checked right before each call).
    Without a stop list (None) no phone is stopped."""

    def __init__(self, stops: StopList | None, clock: Clock, max_age: timedelta) -> None:
        self._stops = stops
        self._clock = clock
        self._max_age = max_age
        self._lock = threading.Lock()
        self._read: dict[str, tuple[bool, datetime]] = {}

    def load(self, phones: Iterable[str]) -> None:
        wanted = sorted(set(phones))
        if self._stops is None or not wanted:
            return
        now = self._clock()
        stopped = self._stops.stopped(wanted)
        with self._lock:
            for phone in wanted:
                self._read[phone] = (phone in stopped, now)

    def get(self, phone: str) -> bool:
        known = self._read.get(phone)
        return known is not None and known[0]

    def fresh(self, phone: str) -> bool:
        """Whether the phone is stopped, as read at most ``max_age`` ago."""
        if self._stops is None:
            return False
        with self._lock:
            now = self._clock()
            known = self._read.get(phone)
            if known is not None and now - known[1] <= self._max_age:
                return known[0]
        stopped = phone in self._stops.stopped([phone])
        with self._lock:
            self._read[phone] = (stopped, now)
        return stopped


@functools.lru_cache(maxsize=1024)
def _zone(utc: str) -> tzinfo | None:
    try:
        return parse_utc(utc)
    except ValueError:
        return None  # validated at input; never hold a message on a bad zone


def window_opening(window: SendWindow | None, utc: str, now: datetime) -> datetime | None:
    """When the client's window next opens; None when open now or there is none."""
    if window is None:
        return None
    zone = _zone(utc)
    return None if zone is None else next_opening(window, zone, now)


def facts(task: SendingTask) -> lifecycle.TaskFacts:
    return lifecycle.TaskFacts(
        deleted=task.deleted,
        end=task.end,
        paused=task.status is TaskStatus.PAUSED,
        cancelled=task.status is TaskStatus.CANCELLED,
    )


def by_message(jobs: list[Job]) -> dict[tuple[int, int], list[Job]]:
    """Copies of one message's job in one batch, the newest generation first."""
    groups: dict[tuple[int, int], list[Job]] = {}
    for item in jobs:
        groups.setdefault((item.job.task_id, item.job.client_id), []).append(item)
    for copies in groups.values():
        copies.sort(key=lambda item: -item.job.generation)
    return groups


def not_sent(item: Job, reason: str, label: str, result: BatchResult) -> None:
    """Every job that does not lead to a provider call says why, once."""
    job = item.job
    with logs.bind(task_id=job.task_id, message_id=job.message_id, client_id=job.client_id):
        log.info(
            "job not sent", extra={"reason": reason, "outcome": label, "generation": job.generation}
        )
    result.count(label)


WORDS = {
    Step.SENT: "sent",
    Step.FAIL: "failed",
    Step.RETRY: "retry scheduled",
    Step.EXPIRE: "expired",
    Step.WAIT: "deferred",
    Step.PARK: "parked",
    Step.SET_ASIDE: "set aside",
    Step.HOLD: "held while its task is paused",
    Step.CANCEL: "cancelled",
    Step.SUPPRESS: "suppressed",
    Step.THROTTLE: "given back: the rate limits left no slot in time",
}


def noted(item: Job, change: Change, result: BatchResult, now: datetime) -> None:
    """One line for each change the sender wrote, saying why."""
    job, after = item.job, change.after
    with logs.bind(task_id=job.task_id, message_id=job.message_id, client_id=job.client_id):
        extra: dict[str, object] = {"reason": change.reason, "attempt": after.attempts}
        if change.step in (Step.RETRY, Step.FAIL, Step.SET_ASIDE) and after.last_error:
            extra["error"] = after.last_error
        if after.not_before_ms is not None and change.step is not Step.EXPIRE:
            extra["due_in_s"] = round((after.not_before_ms - lifecycle.ms(now)) / 1000, 1)
        log.info(f"message {WORDS.get(change.step, change.step.value)}", extra=extra)
    result.count(change.step.value)


def records_from_event(raw_records: Iterable[dict[str, object]]) -> list[Record]:
    return [Record(record_id=str(r["messageId"]), body=str(r["body"])) for r in raw_records]
