"""The sender: turns send jobs from the queue into provider calls and final statuses.

For each batch: parse the jobs, read their tasks and messages (consistently) right
before calling, then call the provider for every message still pending, in parallel,
and record each outcome with a conditional transition. What it guarantees:

- no call for a deleted task, at or after the task's end, or for a message that is no
  longer pending (a duplicate delivery finds it final and calls nothing);
- one job's trouble never touches the others: retryable failures go back to the queue
  with exponential backoff and jitter, up to ``max_attempts``; an unreadable job is
  reported as a batch item failure and ends in the dead-letter queue;
- a crash between the provider's answer and the status write at worst calls again
  with the same ``msgId``, which the provider de-duplicates.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from chalicelib import logs, metrics
from chalicelib.clock import Clock
from chalicelib.domain.clients import parse_utc
from chalicelib.domain.messages import MessageStatus, RetryPolicy
from chalicelib.domain.provider import Outcome
from chalicelib.domain.tasks import SendWindow
from chalicelib.domain.windows import next_opening
from chalicelib.provider import Provider
from chalicelib.queue import SendJob, SendQueue
from chalicelib.storage import messages as message_store
from chalicelib.storage import tasks as task_store
from chalicelib.storage.models import TaskModel

log = logs.get_logger("sender")

# A task read older than this is read again before a provider call.
MAX_CHECK_AGE = timedelta(seconds=1)
MAX_PARALLEL_CALLS = 10


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
class _State:
    """What the batch read says of a message."""

    status: str
    generation: int
    claimed_until_ms: int | None

    def abandoned_by(self, job: SendJob, now: datetime) -> bool:
        """Claimed from this very copy of the job by a sender whose hold has lapsed."""
        return (
            self.generation == job.generation + 1
            and self.claimed_until_ms is not None
            and self.claimed_until_ms <= _ms(now)
        )


@dataclass(frozen=True)
class _Final:
    """A provider outcome to record once the batch's calls are done (one transaction)."""

    work: _Work
    outcome: message_store.Outcome
    label: str
    at: datetime
    detail: str | None = None


@dataclass
class _Work:
    record: Record
    job: SendJob
    task: TaskModel
    read_at: datetime
    result: BatchResult  # where the call's latency and lag are noted (list.append is atomic)


class Sender:
    def __init__(
        self,
        clock: Clock,
        queue: SendQueue,
        provider: Provider,
        policy: RetryPolicy,
        rng: random.Random | None = None,
        *,
        park_after: timedelta = timedelta(minutes=15),
        stage: str = "local",
        lease: timedelta = timedelta(seconds=60),
    ) -> None:
        self._clock = clock
        self._lease = lease
        self._stage = stage
        self._first_send_known: set[int] = set()
        self._park_after = park_after
        self._queue = queue
        self._provider = provider
        self._policy = policy
        self._rng = rng or random.Random()  # noqa: S311 - backoff jitter
        # Outcomes since this container started (local runner and tests read them).
        self.totals: Counter[str] = Counter()
        self._totals_lock = threading.Lock()

    def handle_event(self, raw_records: Iterable[dict[str, object]]) -> BatchResult:
        """Handle the records of an SQS event as Lambda delivers them."""
        return self.handle(records_from_event(raw_records))

    def handle(self, records: Sequence[Record]) -> BatchResult:
        result = self._handle(records)
        with self._totals_lock:
            self.totals.update(result.outcomes)
        outcomes = result.outcomes
        metrics.emit(
            {
                "MessagesSent": outcomes.get("sent", 0),
                "MessagesFailed": outcomes.get("failed", 0),
                "MessagesExpired": outcomes.get("expired", 0),
                "MessagesRetried": outcomes.get("retry", 0),
                "ProviderLatency": result.provider_latencies_ms,
                "DispatchLag": result.dispatch_lags_s,
            },
            {"ProviderLatency": "Milliseconds", "DispatchLag": "Seconds"},
            self._stage,
        )
        return result

    def _note_first_send(self, task: TaskModel, sent_at: datetime) -> float | None:
        """Dispatch lag: from the task becoming due to its first accepted message.

        One conditional write per task and container: the first container to record it
        reports the lag; the others learn the task is done with and never ask again.
        """
        task_id = int(task.id)
        with self._totals_lock:
            if task_id in self._first_send_known:
                return None
            self._first_send_known.add(task_id)
        if not task_store.mark_first_send(task_id, sent_at):
            return None
        lag = (sent_at - task.start_time).total_seconds()
        log.info("first message of the task sent", extra={"dispatch_lag_s": lag})
        return lag

    def _handle(self, records: Sequence[Record]) -> BatchResult:
        result = BatchResult()
        jobs: dict[int, tuple[Record, SendJob]] = {}
        for record in records:
            try:
                job = SendJob.from_body(record.body)
            except ValueError as error:
                log.error(
                    "unreadable send job",
                    extra={"record_id": record.record_id, "error": str(error)},
                )
                result.failed_record_ids.append(record.record_id)
                result.count("poison")
                continue
            if job.message_id in jobs:
                result.count("duplicate")  # the same job twice in one batch: one is enough
                continue
            jobs[job.message_id] = (record, job)
        if not jobs:
            return result

        try:
            work = self._select(list(jobs.values()), result)
        except Exception:
            log.exception("could not read tasks and messages; the batch will be retried")
            result.failed_record_ids += [record.record_id for record, _ in jobs.values()]
            result.count("error")
            return result

        finals: list[_Final] = []
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_CALLS, max(len(work), 1))) as pool:
            for item, outcome in zip(work, pool.map(self._send_one, work), strict=True):
                if outcome is None:
                    result.failed_record_ids.append(item.record.record_id)
                    result.count("error")
                elif isinstance(outcome, _Final):
                    finals.append(outcome)
                else:
                    result.count(outcome)
        self._record(finals, result)
        log.info("send batch", extra={"records": len(records), "outcomes": result.outcomes})
        return result

    # --- before the calls -------------------------------------------------------------

    def _select(self, jobs: list[tuple[Record, SendJob]], result: BatchResult) -> list[_Work]:
        """Drop what must not be sent, defer what is early; return what to send now."""
        now = self._clock()
        tasks: dict[int, TaskModel | None] = {}
        for task_id in {job.task_id for _, job in jobs}:
            tasks[task_id] = task_store.get(task_id)
        messages: dict[tuple[int, int], _State] = {}
        for task_id in tasks:
            client_ids = [job.client_id for _, job in jobs if job.task_id == task_id]
            for client_id, message in message_store.get_many(task_id, client_ids).items():
                messages[(task_id, client_id)] = _State(
                    message.status,
                    int(message.job_gen or 0),
                    int(message.claimed_until) if message.claimed_until is not None else None,
                )
        read_at = self._clock()

        work: list[_Work] = []
        for record, received in jobs:
            job = received
            with logs.bind(task_id=job.task_id, message_id=job.message_id, client_id=job.client_id):
                task = tasks[job.task_id]
                state = messages.get((job.task_id, job.client_id))
                if state is not None and state.abandoned_by(job, now):
                    # The sender that claimed it died: this copy takes over its generation.
                    job = replace(job, generation=state.generation)
                outcome = self._hold_back(job, task, state, now)
                if outcome is not None:
                    result.count(outcome)
                elif task is not None:
                    work.append(_Work(record, job, task, read_at, result))
        return self._claim(work, now, result)

    def _claim(self, work: list[_Work], now: datetime, result: BatchResult) -> list[_Work]:
        """Hold the messages about to be sent, so no other copy of a job sends them too."""
        claimed: list[_Work] = []
        for task_id in {item.job.task_id for item in work}:
            items = [item for item in work if item.job.task_id == task_id]
            won = message_store.claim_many(
                task_id,
                [(item.job.client_id, item.job.generation) for item in items],
                now_ms=_ms(now),
                lease_ms=int(self._lease.total_seconds() * 1000),
            )
            for item in items:
                if item.job.client_id in won:
                    item.job = replace(item.job, generation=item.job.generation + 1)
                    claimed.append(item)
                else:
                    result.count("dropped")  # another copy of the job holds it
        return claimed

    def _hold_back(  # noqa: PLR0911 - one return per reason, in the order they apply
        self,
        job: SendJob,
        task: TaskModel | None,
        state: _State | None,
        now: datetime,
    ) -> str | None:
        """Why this job must not be sent now (and what was done about it), or None."""
        if task is None:
            log.info("job dropped: task deleted")
            return "dropped"
        if state is None or state.status != MessageStatus.PENDING.value:
            status = state.status if state else None
            log.info("job dropped: message already final", extra={"status": status})
            return "dropped"
        if state.generation != job.generation:
            # Another copy of this job holds it, or a newer copy carries on.
            log.info("job dropped: stale copy", extra={"generation": state.generation})
            return "dropped"
        if now >= task.end_time:
            self._expire(job, now)
            return "expired"
        if job.not_before_ms is not None and job.not_before_ms > _ms(now):
            self._requeue(job, job.not_before_ms, now, reason="not due yet")
            return "deferred"
        opening = self._window_opening(task, job, now)
        if opening is None:
            return None
        if opening >= task.end_time:
            # It never opens before the end: the end-of-task sweep expires it.
            log.info("job dropped: send window opens after the end")
            return "window_closed"
        if opening - now > self._park_after:
            # A long wait: park it (two writes) rather than re-queue it every 15 minutes.
            if message_store.park(
                job.task_id, job.client_id, generation=job.generation, wake_ms=_ms(opening)
            ):
                log.info("message parked until its send window opens", extra={"wake": str(opening)})
            return "parked"
        self._requeue(job, _ms(opening), now, reason="outside send window")
        return "deferred"

    @staticmethod
    def _window_opening(task: TaskModel, job: SendJob, now: datetime) -> datetime | None:
        if task.window_from is None or task.window_to is None:
            return None
        window = SendWindow.parse(task.window_from, task.window_to)
        try:
            zone = parse_utc(job.utc)
        except ValueError:
            return None  # validated at input; never hold a message on a bad zone
        return next_opening(window, zone, now)

    # --- after the calls --------------------------------------------------------------

    def _record(self, finals: list[_Final], result: BatchResult) -> None:
        """Write the batch's final statuses, one transaction per task (and 98 messages)."""
        by_task: dict[int, list[_Final]] = {}
        for final in finals:
            by_task.setdefault(final.work.job.task_id, []).append(final)
        for task_id, group in by_task.items():
            try:
                moved = message_store.finish_many(
                    task_id, [final.outcome for final in group], now=max(f.at for f in group)
                )
            except Exception:
                # The provider answered but nothing was recorded: the jobs come back and the
                # provider de-duplicates the repeated msgId.
                log.exception("could not record outcomes; the jobs will be retried")
                result.failed_record_ids += [final.work.record.record_id for final in group]
                result.count("error")
                continue
            for final in group:
                job = final.work.job
                with logs.bind(
                    task_id=job.task_id, message_id=job.message_id, client_id=job.client_id
                ):
                    if job.client_id not in moved:
                        log.info("outcome not recorded: message no longer pending")
                        result.count("dropped")
                        continue
                    attempt = final.outcome.attempts
                    if final.label == "sent":
                        log.info("message sent", extra={"attempt": attempt})
                        lag = self._note_first_send(final.work.task, final.at)
                        if lag is not None:
                            result.dispatch_lags_s.append(lag)
                    else:
                        log.info(
                            "message failed", extra={"attempt": attempt, "error": final.detail}
                        )
                    result.count(final.label)

    # --- the call ---------------------------------------------------------------------

    def _send_one(self, work: _Work) -> str | _Final | None:
        """Call the provider for one message and record the outcome; None on our error."""
        job = work.job
        with logs.bind(task_id=job.task_id, message_id=job.message_id, client_id=job.client_id):
            try:
                return self._call_and_record(work)
            except Exception:
                log.exception("send failed inside the service; the job will be retried")
                return None

    def _call_and_record(self, work: _Work) -> str | _Final:
        job, task = work.job, work.task
        now = self._clock()
        if now - work.read_at > MAX_CHECK_AGE:
            fresh = task_store.get(job.task_id)
            if fresh is None:
                log.info("job dropped: task deleted")
                return "dropped"
            task = fresh
        if now >= task.end_time:  # the last check, right before the call
            self._expire(job, now)
            return "expired"
        attempt = job.attempt + 1
        answer = self._provider.send(job.message_id, job.phone, task.text, attempt=attempt)
        if answer.latency_ms is not None:
            work.result.provider_latencies_ms.append(answer.latency_ms)
        done_at = self._clock()
        if answer.outcome is Outcome.SENT:
            final = message_store.Outcome(job.client_id, MessageStatus.SENT, attempts=attempt)
            return _Final(work, final, "sent", done_at)
        return self._after_failure(
            work,
            task,
            attempt=attempt,
            outcome=answer.outcome,
            detail=answer.detail,
            done_at=done_at,
        )

    def _after_failure(
        self,
        work: _Work,
        task: TaskModel,
        *,
        attempt: int,
        outcome: Outcome,
        detail: str,
        done_at: datetime,
    ) -> str | _Final:
        """Fail for good, or record the attempt and queue the retry with backoff."""
        job = work.job
        if outcome is Outcome.PERMANENT or self._policy.gives_up_after(attempt):
            final = message_store.Outcome(
                job.client_id, MessageStatus.FAILED, attempts=attempt, last_error=detail
            )
            return _Final(work, final, "failed", done_at, detail)
        delay = self._policy.delay_seconds(attempt, self._rng)
        retry_at = done_at + timedelta(seconds=delay)
        if not message_store.requeue(
            job.task_id,
            job.client_id,
            generation=job.generation,
            attempts=attempt,
            last_error=detail,
        ):
            return "dropped"  # a concurrent copy of this job recorded the attempt
        if retry_at >= task.end_time:
            log.info("message not retried: the next attempt would be after the end")
            return "retry_after_end"
        self._queue.send([job.requeued(attempt, _ms(retry_at))], delay_seconds=delay)
        log.info(
            "message retry scheduled",
            extra={"attempt": attempt, "error": detail, "delay_s": round(delay, 1)},
        )
        return "retry"

    # --- helpers ----------------------------------------------------------------------

    def _expire(self, job: SendJob, now: datetime) -> None:
        if message_store.finish(job.task_id, job.client_id, MessageStatus.EXPIRED, now=now):
            log.info("message expired: the task's end has passed")

    def _requeue(self, job: SendJob, not_before_ms: int, now: datetime, reason: str) -> None:
        if not message_store.requeue(job.task_id, job.client_id, generation=job.generation):
            log.info("job dropped: a copy of it was re-queued already")
            return
        delay = max(0.0, (not_before_ms - _ms(now)) / 1000)
        self._queue.send([job.requeued(job.attempt, not_before_ms)], delay_seconds=delay)
        log.info("job deferred", extra={"reason": reason, "delay_s": round(delay, 1)})


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def records_from_event(raw_records: Iterable[dict[str, object]]) -> list[Record]:
    return [Record(record_id=str(r["messageId"]), body=str(r["body"])) for r in raw_records]
