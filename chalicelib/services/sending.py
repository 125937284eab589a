"""The sender: turns send jobs from the queue into provider calls and final statuses.

For each batch: parse the jobs, read their tasks and messages (consistently), ask the
message lifecycle (``chalicelib/domain/lifecycle.py``) what each job may do, write what
it decided (conditionally: a stale or concurrent copy writes nothing), call the provider
for the messages this copy claimed, in parallel, and record each answer the same way.
What it guarantees (SPEC rules 4-8):

- no call for a deleted task, at or after the task's end, or for a message another copy
  holds or has moved on; the last check is made right before the call, after the token
  read, with a task read at most ``max_check_age`` ago, counting the connect time in;
- one job's trouble never touches the others: retryable failures wait out a backoff
  with jitter, up to ``max_attempts``; an unreadable job is reported as a batch item
  failure and ends in the dead-letter queue;
- every pending message keeps a way forward: a queued job, or a wake time the
  dispatcher acts on if that job is lost (a crash, a queue error);
- a crash between the provider's answer and the status write at worst calls again
  with the same ``msgId``, which the provider de-duplicates.
"""

from __future__ import annotations

import functools
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from chalicelib import logs, metrics
from chalicelib.clock import Clock
from chalicelib.domain import lifecycle
from chalicelib.domain.clients import parse_utc
from chalicelib.domain.lifecycle import Change, Decision, JobFacts, MessageState, Refusal, Step
from chalicelib.domain.messages import RetryPolicy
from chalicelib.domain.tasks import SendingTask, SendWindow
from chalicelib.domain.windows import next_opening
from chalicelib.ports import JobQueue, MessageRepository, PartialWrite, Provider, TaskRepository
from chalicelib.queue import SendJob

log = logs.get_logger("sender")

# A task read older than this is read again right before a provider call.
MAX_CHECK_AGE = timedelta(seconds=0.5)
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
class _Job:
    record: Record
    job: SendJob


@dataclass(frozen=True)
class _Claimed:
    """A message this copy holds for a provider call."""

    item: _Job
    state: MessageState  # as claimed


@dataclass(frozen=True)
class _Answered:
    item: _Job
    decision: Decision | None  # None: nothing to record (the task was deleted)


class _Tasks:
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


@functools.lru_cache(maxsize=1024)
def _zone(utc: str) -> tzinfo | None:
    try:
        return parse_utc(utc)
    except ValueError:
        return None  # validated at input; never hold a message on a bad zone


def window_opening(window: SendWindow | None, utc: str, now: datetime) -> datetime | None:
    """When the client's window next opens; None when open now or there is none."""
    zone = _zone(utc)
    if window is None or zone is None:
        return None
    return next_opening(window, zone, now)


def _facts(task: SendingTask) -> lifecycle.TaskFacts:
    return lifecycle.TaskFacts(deleted=task.deleted, end=task.end)


class Sender:
    def __init__(
        self,
        clock: Clock,
        *,
        messages: MessageRepository,
        tasks: TaskRepository,
        queue: JobQueue,
        provider: Provider,
        policy: RetryPolicy,
        timing: lifecycle.Timing,
        rng: random.Random | None = None,
        stage: str = "local",
        parallel_calls: int = MAX_PARALLEL_CALLS,
        max_check_age: timedelta = MAX_CHECK_AGE,
    ) -> None:
        self._clock = clock
        self._messages = messages
        self._tasks = tasks
        self._queue = queue
        self._provider = provider
        self._policy = policy
        self._timing = timing
        self._rng = rng or random.Random()  # noqa: S311 - backoff jitter
        self._stage = stage
        self._parallel = parallel_calls
        self._max_check_age = max_check_age
        self._first_send_known: set[int] = set()
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

    def _handle(self, records: Sequence[Record]) -> BatchResult:
        result = BatchResult()
        jobs = self._parse(records, result)
        if not jobs:
            return result
        tasks = _Tasks(self._tasks, self._clock, self._max_check_age)
        try:
            tasks.load({item.job.task_id for item in jobs})
            states = self._states(jobs)
        except Exception:
            log.exception("could not read tasks and messages; the batch will be retried")
            result.failed_record_ids += [item.record.record_id for item in jobs]
            result.count("error")
            return result
        claimed = self._decide(jobs, tasks, states, result)
        answered = self._call_all(claimed, tasks, result)
        self._record(answered, tasks, result)
        log.info("send batch", extra={"records": len(records), "outcomes": result.outcomes})
        return result

    # --- before the calls -------------------------------------------------------------

    @staticmethod
    def _parse(records: Sequence[Record], result: BatchResult) -> list[_Job]:
        jobs = []
        for record in records:
            try:
                jobs.append(_Job(record, SendJob.from_body(record.body)))
            except ValueError as error:
                log.error(
                    "unreadable send job",
                    extra={"record_id": record.record_id, "error": str(error)},
                )
                result.failed_record_ids.append(record.record_id)
                result.count("poison")
        return jobs

    def _states(self, jobs: list[_Job]) -> dict[tuple[int, int], MessageState]:
        states: dict[tuple[int, int], MessageState] = {}
        for task_id in {item.job.task_id for item in jobs}:
            client_ids = [item.job.client_id for item in jobs if item.job.task_id == task_id]
            for client_id, state in self._messages.states(task_id, client_ids).items():
                states[(task_id, client_id)] = state
        return states

    def _decide(
        self,
        jobs: list[_Job],
        tasks: _Tasks,
        states: dict[tuple[int, int], MessageState],
        result: BatchResult,
    ) -> list[_Claimed]:
        """Ask the lifecycle about one copy per message, write what it decided."""
        now = self._clock()
        now_ms = lifecycle.ms(now)
        decided: list[tuple[_Job, Decision]] = []
        for key, copies in _by_message(jobs).items():
            state = states.get(key)
            chosen: _Job | None = None
            for item in copies:
                job = item.job
                refusal = lifecycle.current_copy(
                    state, JobFacts(job.generation, job.not_before_ms), now_ms
                )
                if refusal is None and chosen is None:
                    chosen = item
                    continue
                reason = refusal.reason if refusal else "another copy in the same batch"
                _not_sent(item, reason, "dropped", result)
            if chosen is None or state is None:
                continue
            task = tasks.get(chosen.job.task_id)
            verdict = self._on_job(chosen, state, task, now)
            if isinstance(verdict, Refusal):
                _not_sent(chosen, verdict.reason, "dropped", result)
            else:
                decided.append((chosen, verdict))

        written = self._apply([(item, decision.change) for item, decision in decided], result)
        claimed: list[_Claimed] = []
        for item, decision in decided:
            change = decision.change
            if (item.job.task_id, change.client_id) not in written:
                _not_sent(item, "the message moved on meanwhile", "dropped", result)
                continue
            if decision.call:
                claimed.append(_Claimed(item, change.after))
                continue
            self._queue_next(item, decision, now)
            _noted(item, change, result, now)
        return claimed

    def _on_job(
        self, item: _Job, state: MessageState, task: SendingTask | None, now: datetime
    ) -> Decision | Refusal:
        job = item.job
        if task is None:
            return Refusal("task deleted")
        opening = window_opening(task.window, job.utc, now)
        return lifecycle.on_job(
            state,
            JobFacts(job.generation, job.not_before_ms),
            _facts(task),
            now,
            opening=opening,
            timing=self._timing,
        )

    def _apply(
        self, decided: list[tuple[_Job, Change]], result: BatchResult
    ) -> set[tuple[int, int]]:
        """Write the changes, per task; the jobs of a task whose write failed come back."""
        written: set[tuple[int, int]] = set()
        by_task: dict[int, list[tuple[_Job, Change]]] = {}
        for item, change in decided:
            by_task.setdefault(item.job.task_id, []).append((item, change))
        for task_id, group in by_task.items():
            try:
                done = self._messages.apply(task_id, [c for _, c in group], self._clock())
            except PartialWrite as partial:
                # What was written stands; what failed comes back with its job.
                done = partial.written
                result.failed_record_ids += [
                    item.record.record_id for item, c in group if c.client_id in partial.failed
                ]
                result.count("error")
            except Exception:
                log.exception("could not write decisions; the jobs will be retried")
                result.failed_record_ids += [item.record.record_id for item, _ in group]
                result.count("error")
                continue
            written |= {(task_id, client_id) for client_id in done}
        return written

    def _queue_next(self, item: _Job, decision: Decision, now: datetime) -> None:
        """Queue the copy the new state expects; if that fails, its wake time stands in."""
        if decision.queue_at_ms is None:
            return
        after = decision.change.after
        job = item.job.next_copy(after.generation, after.attempts, decision.queue_at_ms)
        delay = max(0.0, (decision.queue_at_ms - lifecycle.ms(now)) / 1000)
        try:
            self._queue.send([job], delay_seconds=delay)
        except Exception:
            log.exception("could not queue the next job; the dispatcher wakes the message")

    # --- the calls --------------------------------------------------------------------

    def _call_all(
        self, claimed: list[_Claimed], tasks: _Tasks, result: BatchResult
    ) -> list[_Answered]:
        call: Callable[[_Claimed], _Answered | None] = functools.partial(
            self._call, tasks=tasks, result=result
        )
        if self._parallel <= 1 or len(claimed) <= 1:
            answers = [call(item) for item in claimed]
        else:
            with ThreadPoolExecutor(max_workers=min(self._parallel, len(claimed))) as pool:
                answers = list(pool.map(call, claimed))
        answered = []
        for claim, answer in zip(claimed, answers, strict=True):
            if answer is None:
                # Ours, not the provider's: the job comes back; the claim lapses first.
                result.failed_record_ids.append(claim.item.record.record_id)
                result.count("error")
            else:
                answered.append(answer)
        return answered

    def _call(self, claim: _Claimed, *, tasks: _Tasks, result: BatchResult) -> _Answered | None:
        job = claim.item.job
        with logs.bind(task_id=job.task_id, message_id=job.message_id, client_id=job.client_id):
            try:
                return self._call_one(claim, tasks, result)
            except Exception:
                log.exception("send failed inside the service; the job will be retried")
                return None

    def _call_one(self, claim: _Claimed, tasks: _Tasks, result: BatchResult) -> _Answered:
        job = claim.item.job
        token = self._provider.warm()  # slow first (a token read), then the last check
        task = tasks.fresh(job.task_id)
        now = self._clock()
        if task is None or task.deleted:
            _not_sent(claim.item, "task deleted", "dropped", result)
            return _Answered(claim.item, None)
        connect = timedelta(seconds=self._provider.connect_timeout)
        reason = lifecycle.may_call(
            _facts(task),
            now,
            connect=connect,
            call=connect + timedelta(seconds=self._provider.read_timeout),
            claimed_until_ms=claim.state.claimed_until_ms,
        )
        if reason is not None and now + connect < task.end:
            # Too late for this claim: the dispatcher takes the message back when it lapses.
            _not_sent(claim.item, reason, "dropped", result)
            return _Answered(claim.item, None)
        if reason is not None:
            change = lifecycle.expire(claim.state, lifecycle.ms(now), reason)
            return _Answered(claim.item, Decision(change))
        answer = self._provider.send(
            job.message_id, job.phone, task.text, attempt=job.attempt + 1, token=token
        )
        if answer.latency_ms is not None:
            result.provider_latencies_ms.append(answer.latency_ms)
        done_at = self._clock()
        decision = lifecycle.on_answer(
            claim.state,
            lifecycle.Answer(answer.outcome, answer.detail),
            task=_facts(task),
            done_at=done_at,
            policy=self._policy,
            delay_seconds=self._policy.delay_seconds(claim.state.attempts + 1, self._rng),
            timing=self._timing,
        )
        return _Answered(claim.item, decision)

    # --- after the calls --------------------------------------------------------------

    def _record(self, answered: list[_Answered], tasks: _Tasks, result: BatchResult) -> None:
        """Write the batch's answers, per task (final statuses in one transaction)."""
        by_task: dict[int, list[tuple[_Job, Decision]]] = {}
        for answer in answered:
            if answer.decision is not None:
                by_task.setdefault(answer.item.job.task_id, []).append(
                    (answer.item, answer.decision)
                )
        for task_id, group in by_task.items():
            try:
                done = self._messages.apply(
                    task_id, [decision.change for _, decision in group], self._clock()
                )
            except Exception:
                # The provider answered but nothing was recorded: the jobs come back and
                # the provider de-duplicates the repeated msgId.
                log.exception("could not record outcomes; the jobs will be retried")
                result.failed_record_ids += [item.record.record_id for item, _ in group]
                result.count("error")
                continue
            now = self._clock()
            for item, decision in group:
                written = item.job.client_id in done
                self._recorded(item, decision, written, tasks=tasks, now=now, result=result)

    def _recorded(
        self,
        item: _Job,
        decision: Decision,
        written: bool,
        *,
        tasks: _Tasks,
        now: datetime,
        result: BatchResult,
    ) -> None:
        job, change = item.job, decision.change
        with logs.bind(task_id=job.task_id, message_id=job.message_id, client_id=job.client_id):
            if not written:
                log.info("outcome not recorded: the message moved on meanwhile")
                result.count("dropped")
                return
            _noted(item, change, result, now)
            if change.step is Step.SENT:
                lag = self._note_first_send(tasks.get(job.task_id), now)
                if lag is not None:
                    result.dispatch_lags_s.append(lag)
            self._queue_next(item, decision, now)

    def _note_first_send(self, task: SendingTask | None, sent_at: datetime) -> float | None:
        """Dispatch lag: from the task becoming due to its first accepted message.

        One conditional write per task and container: the first container to record it
        reports the lag; the others learn the task is done with and never ask again.
        """
        if task is None or task.first_sent:
            return None
        with self._totals_lock:
            if task.id in self._first_send_known:
                return None
            self._first_send_known.add(task.id)
        if not self._tasks.mark_first_send(task.id, sent_at):
            return None
        lag = (sent_at - task.start).total_seconds()
        log.info("first message of the task sent", extra={"dispatch_lag_s": lag})
        return lag


def _by_message(jobs: list[_Job]) -> dict[tuple[int, int], list[_Job]]:
    """Copies of one message's job in one batch, the newest generation first."""
    groups: dict[tuple[int, int], list[_Job]] = {}
    for item in jobs:
        groups.setdefault((item.job.task_id, item.job.client_id), []).append(item)
    for copies in groups.values():
        copies.sort(key=lambda item: -item.job.generation)
    return groups


def _not_sent(item: _Job, reason: str, label: str, result: BatchResult) -> None:
    """Every job that does not lead to a provider call says why, once."""
    job = item.job
    with logs.bind(task_id=job.task_id, message_id=job.message_id, client_id=job.client_id):
        log.info(
            "job not sent", extra={"reason": reason, "outcome": label, "generation": job.generation}
        )
    result.count(label)


_WORDS = {
    Step.SENT: "sent",
    Step.FAIL: "failed",
    Step.RETRY: "retry scheduled",
    Step.EXPIRE: "expired",
    Step.WAIT: "deferred",
    Step.PARK: "parked",
    Step.SET_ASIDE: "set aside",
}


def _noted(item: _Job, change: Change, result: BatchResult, now: datetime) -> None:
    """One line for each change the sender wrote, saying why."""
    job, after = item.job, change.after
    with logs.bind(task_id=job.task_id, message_id=job.message_id, client_id=job.client_id):
        extra: dict[str, object] = {"reason": change.reason, "attempt": after.attempts}
        if change.step in (Step.RETRY, Step.FAIL, Step.SET_ASIDE) and after.last_error:
            extra["error"] = after.last_error
        if after.not_before_ms is not None and change.step is not Step.EXPIRE:
            extra["due_in_s"] = round((after.not_before_ms - lifecycle.ms(now)) / 1000, 1)
        log.info(f"message {_WORDS.get(change.step, change.step.value)}", extra=extra)
    result.count(change.step.value)


def records_from_event(raw_records: Iterable[dict[str, object]]) -> list[Record]:
    return [Record(record_id=str(r["messageId"]), body=str(r["body"])) for r in raw_records]
