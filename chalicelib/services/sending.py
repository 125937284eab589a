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

import contextvars
import functools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta

from chalicelib import logs, metrics
from chalicelib.clock import Clock
from chalicelib.domain import lifecycle
from chalicelib.domain.lifecycle import Change, Decision, JobFacts, MessageState, Refusal, Step
from chalicelib.domain.messages import RetryPolicy
from chalicelib.domain.ratelimit import RateScope, Reservation, send_scopes
from chalicelib.domain.retention import Retention
from chalicelib.domain.tasks import SendingTask
from chalicelib.ports import (
    JobQueue,
    MessageRepository,
    PartialWrite,
    Provider,
    RateLimiter,
    StopList,
    TaskRepository,
)
from chalicelib.queue import SendJob
from chalicelib.services.send_batch import (
    Answered,
    BatchResult,
    BatchStops,
    BatchTasks,
    Claimed,
    Job,
    Record,
    by_message,
    facts,
    not_sent,
    noted,
    records_from_event,
    window_opening,
)

__all__ = ["BatchResult", "Record", "Sender", "records_from_event"]


def _key(item: Job) -> tuple[int, int]:
    return item.job.task_id, item.job.client_id


log = logs.get_logger("sender")

# How long jobs wait when the rate limiter cannot be read (they are not sent meanwhile).
LIMITER_TROUBLE_WAIT = timedelta(seconds=5)
# How long the sender holds claims the rate limits gave no slot, waiting for one, before
# it gives them back to the queue (a full limit then costs sleeping senders, not queue
# round trips). No round starts after it, and a round's calls end within the connect and
# read timeouts (12 s), inside the send function's 30 s timeout (.chalice/config.json;
# tests/unit/test_engine_races.py).
RATE_WAIT = timedelta(seconds=10)
# A task read older than this is read again right before a provider call.
MAX_CHECK_AGE = timedelta(seconds=0.5)
MAX_PARALLEL_CALLS = 10


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
        retention: Retention | None = None,
        stops: StopList | None = None,
        limiter: RateLimiter | None = None,
        send_rate_limit: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
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
        self._retention = retention
        self._stops = stops
        self._limiter = limiter
        self._send_rate_limit = send_rate_limit
        self._sleep = sleep
        self._first_send_known: set[int] = set()
        # Outcomes since this container started (the tests read them).
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
                "MessagesCancelled": outcomes.get("cancelled", 0),
                "MessagesSuppressed": outcomes.get("suppressed", 0),
                "MessagesThrottled": outcomes.get("throttled", 0),
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
        tasks = BatchTasks(self._tasks, self._clock, self._max_check_age)
        stops = BatchStops(self._stops, self._clock, self._max_check_age)
        try:
            tasks.load({item.job.task_id for item in jobs})
            states = self._states(jobs)
            stops.load(item.job.phone for item in jobs)
        except Exception:
            log.exception("could not read tasks and messages; the batch will be retried")
            result.failed_record_ids += [item.record.record_id for item in jobs]
            result.count("error")
            return result
        claimed = self._decide(jobs, tasks, stops, states, result)
        self._call_all(claimed, tasks, stops, result)
        log.info("send batch", extra={"records": len(records), "outcomes": result.outcomes})
        return result

    # --- before the calls -------------------------------------------------------------

    @staticmethod
    def _parse(records: Sequence[Record], result: BatchResult) -> list[Job]:
        jobs = []
        for record in records:
            try:
                jobs.append(Job(record, SendJob.from_body(record.body)))
            except ValueError as error:
                log.error(
                    "unreadable send job",
                    extra={"record_id": record.record_id, "error": str(error)},
                )
                result.failed_record_ids.append(record.record_id)
                result.count("poison")
        return jobs

    def _states(self, jobs: list[Job]) -> dict[tuple[int, int], MessageState]:
        states: dict[tuple[int, int], MessageState] = {}
        for task_id in {item.job.task_id for item in jobs}:
            client_ids = [item.job.client_id for item in jobs if item.job.task_id == task_id]
            for client_id, state in self._messages.states(task_id, client_ids).items():
                states[(task_id, client_id)] = state
        return states

    def _decide(
        self,
        jobs: list[Job],
        tasks: BatchTasks,
        stops: BatchStops,
        states: dict[tuple[int, int], MessageState],
        result: BatchResult,
    ) -> list[Claimed]:
        """Ask the lifecycle about one copy per message, write what it decided."""
        now = self._clock()
        now_ms = lifecycle.ms(now)
        decided: list[tuple[Job, Decision]] = []
        for key, copies in by_message(jobs).items():
            state = states.get(key)
            chosen: Job | None = None
            for item in copies:
                job = item.job
                refusal = lifecycle.current_copy(
                    state, JobFacts(job.generation, job.not_before_ms), now_ms
                )
                if refusal is None and chosen is None:
                    chosen = item
                    continue
                reason = refusal.reason if refusal else "another copy in the same batch"
                not_sent(item, reason, "dropped", result)
                if refusal is not None and state is not None and state.held_at(now_ms):
                    self._after_lease(item, state, now, result)
            if chosen is None or state is None:
                continue
            task = tasks.get(chosen.job.task_id)
            verdict = self._on_job(chosen, state, task, now, stopped=stops.get(chosen.job.phone))
            if isinstance(verdict, Refusal):
                not_sent(chosen, verdict.reason, "dropped", result)
            else:
                decided.append((chosen, verdict))

        written = self._apply(
            [(item, decision.change) for item, decision in decided], tasks, result
        )
        claimed: list[Claimed] = []
        for item, decision in decided:
            change = decision.change
            if (item.job.task_id, change.client_id) not in written:
                not_sent(item, "the message moved on meanwhile", "dropped", result)
                continue
            if decision.call:
                claimed.append(Claimed(item, change.after))
                continue
            self._queue_next(item, decision, now)
            noted(item, change, result, now)
        return claimed

    def _slots(self, limiter: RateLimiter, scopes: Sequence[RateScope], count: int) -> Reservation:
        """Reserve ``count`` slots now. Slots granted are used at their times, never held
        while asking for more (their calls would be late); the rest wait."""
        now = self._clock()
        try:
            return limiter.reserve(scopes, count, now)
        except Exception:
            log.exception("could not reserve send slots; the jobs wait")
            return Reservation((), now + LIMITER_TROUBLE_WAIT)

    def _on_job(
        self,
        item: Job,
        state: MessageState,
        task: SendingTask | None,
        now: datetime,
        *,
        stopped: bool,
    ) -> Decision | Refusal:
        job = item.job
        if task is None:
            return Refusal("task deleted")
        opening = window_opening(task.window, job.utc, now)
        return lifecycle.on_job(
            state,
            JobFacts(job.generation, job.not_before_ms),
            facts(task),
            now,
            opening=opening,
            timing=self._timing,
            stopped=stopped,
        )

    def _apply(
        self, decided: list[tuple[Job, Change]], tasks: BatchTasks, result: BatchResult
    ) -> set[tuple[int, int]]:
        """Write the changes, per task; the jobs of a task whose write failed come back."""
        written: set[tuple[int, int]] = set()
        by_task: dict[int, list[tuple[Job, Change]]] = {}
        for item, change in decided:
            by_task.setdefault(item.job.task_id, []).append((item, change))
        for task_id, group in by_task.items():
            try:
                done = self._messages.apply(
                    task_id,
                    [c for _, c in group],
                    self._clock(),
                    expires_at=self._expiry(tasks.get(task_id)),
                )
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

    def _expiry(self, task: SendingTask | None) -> datetime | None:
        """The TTL stamp of a message write: from the task's end as read now (an end
        moved later by PATCH reaches every message written since)."""
        if task is None or self._retention is None:
            return None
        return self._retention.message_expiry(task.end)

    def _queue_next(self, item: Job, decision: Decision, now: datetime) -> None:
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

    def _after_lease(
        self, item: Job, state: MessageState, now: datetime, result: BatchResult
    ) -> None:
        """This copy meets a claim it may not act on yet (another sender holds it, or its
        own claim is too short to call on): a claim has no wake time, so the copy comes
        back when the lease ends, and takes over if nobody recorded an answer by then.
        If queueing fails, the job returns from the queue (a batch item failure)."""
        if state.claimed_until_ms is None:
            return
        delay = max(0.0, (state.claimed_until_ms - lifecycle.ms(now)) / 1000) + 1
        try:
            self._queue.send([item.job], delay_seconds=delay)
        except Exception:
            log.exception("could not queue the job for the lease's end; it comes back")
            result.failed_record_ids.append(item.record.record_id)

    # --- the calls --------------------------------------------------------------------

    def _call_all(
        self, claimed: list[Claimed], tasks: BatchTasks, stops: BatchStops, result: BatchResult
    ) -> None:
        """Call for the claimed messages, each at a slot of its rate limits, and record
        the answers: the claims the limits give no slot now wait in this sender for one
        (a round of calls at a time, each recorded at once, for up to ``RATE_WAIT``: no
        new jobs are taken meanwhile), then are given back, queued again for when a slot
        may be free."""
        waiting = claimed
        if self._limited(claimed, tasks):
            self._warm()
        give_up = self._clock() + RATE_WAIT
        while waiting:
            slotted, waiting, retry_at = self._reserve(waiting, tasks)
            self._record(self._call_round(slotted, tasks, stops, result), tasks, result)
            if not waiting:
                break
            if max(retry_at, self._clock()) > give_up:
                released = [self._release(claim, retry_at, tasks) for claim in waiting]
                self._record(released, tasks, result)
                break
            pause = (retry_at - self._clock()).total_seconds()
            if pause > 0:
                self._sleep(pause)

    def _reserve(
        self, claimed: list[Claimed], tasks: BatchTasks
    ) -> tuple[list[Claimed], list[Claimed], datetime]:
        """Slots under the task's ``rate_limit`` and ``SEND_RATE_LIMIT``, per task, taken
        right before the calls (so each call starts at its slot): the claims with one,
        those without, and when asking again may succeed."""
        if self._limiter is None:
            return claimed, [], self._clock()
        by_task: dict[int, list[Claimed]] = {}
        for claim in claimed:
            by_task.setdefault(claim.item.job.task_id, []).append(claim)
        slotted: list[Claimed] = []
        waiting: list[Claimed] = []
        retry_at: datetime | None = None
        for task_id, claims in by_task.items():
            task = tasks.get(task_id)
            scopes = send_scopes(task_id, task.rate_limit if task else None, self._send_rate_limit)
            if not scopes:
                slotted += claims
                continue
            got = self._slots(self._limiter, scopes, len(claims))
            slotted += [replace(c, slot=s) for c, s in zip(claims, got.slots, strict=False)]
            if len(got.slots) < len(claims):
                waiting += claims[len(got.slots) :]
                due = got.retry_at or self._clock() + LIMITER_TROUBLE_WAIT
                retry_at = due if retry_at is None else min(retry_at, due)
        return slotted, waiting, retry_at or self._clock()

    def _limited(self, claimed: list[Claimed], tasks: BatchTasks) -> bool:
        if not claimed or self._limiter is None:
            return False
        if self._send_rate_limit is not None:
            return True
        read = [tasks.get(claim.item.job.task_id) for claim in claimed]
        return any(task is not None and task.rate_limit is not None for task in read)

    def _warm(self) -> None:
        """The token read before slots are taken, so that the calls start at their slots
        rather than after a slow read (each call reads it again, from the cache)."""
        try:
            self._provider.warm()
        except Exception:
            log.info("token read failed before the slots; each call tries again")

    def _release(self, claim: Claimed, retry_at: datetime, tasks: BatchTasks) -> Answered:
        """Give a claim back without a call: queued again for when a slot may be free."""
        task = tasks.get(claim.item.job.task_id)
        end = task.end if task is not None else retry_at
        due = max(retry_at, self._clock() + timedelta(seconds=1))
        decision = lifecycle.release(claim.state, lifecycle.ms(due), end=end, timing=self._timing)
        return Answered(claim.item, decision)

    def _call_round(
        self, claimed: list[Claimed], tasks: BatchTasks, stops: BatchStops, result: BatchResult
    ) -> list[Answered]:
        call: Callable[[Claimed], Answered | None] = functools.partial(
            self._call, tasks=tasks, stops=stops, result=result
        )
        if not claimed:
            return []
        if self._parallel <= 1 or len(claimed) <= 1:
            answers = [call(item) for item in claimed]
        else:
            # Each call runs in a copy of this thread's context: its log lines carry the
            # invocation's bound fields (function_request_id) as well as its own.
            context = contextvars.copy_context()
            with ThreadPoolExecutor(max_workers=min(self._parallel, len(claimed))) as pool:
                answers = list(pool.map(lambda claim: context.copy().run(call, claim), claimed))
        answered = []
        for claim, answer in zip(claimed, answers, strict=True):
            if answer is None:
                # Ours, not the provider's: the job comes back; the claim lapses first.
                result.failed_record_ids.append(claim.item.record.record_id)
                result.count("error")
            else:
                answered.append(answer)
        return answered

    def _call(
        self, claim: Claimed, *, tasks: BatchTasks, stops: BatchStops, result: BatchResult
    ) -> Answered | None:
        job = claim.item.job
        with logs.bind(task_id=job.task_id, message_id=job.message_id, client_id=job.client_id):
            try:
                return self._call_one(claim, tasks, stops, result)
            except Exception:
                log.exception("send failed inside the service; the job will be retried")
                return None

    def _call_one(
        self, claim: Claimed, tasks: BatchTasks, stops: BatchStops, result: BatchResult
    ) -> Answered:
        job = claim.item.job
        token = self._provider.warm()  # slow first (a token read), then the last check
        if claim.slot is not None:
            # The rate limits' slot: a call starts at it, never before (the slots of one
            # scope are 1/rate apart whoever reserved them: chalicelib/domain/ratelimit.py).
            wait = (claim.slot - self._clock()).total_seconds()
            if wait > 0:
                self._sleep(wait)
        # The stop list first (it may be read again, slowly), then the task, then the
        # clock: nothing slow comes between the last check and the call.
        stopped = stops.fresh(job.phone)
        task = tasks.fresh(job.task_id)
        now = self._clock()
        if task is None or task.deleted:
            not_sent(claim.item, "task deleted", "dropped", result)
            return Answered(claim.item, None)
        connect = timedelta(seconds=self._provider.connect_timeout)
        verdict = lifecycle.last_check(
            claim.state,
            facts(task),
            now,
            connect=connect,
            call=connect + timedelta(seconds=self._provider.read_timeout),
            stopped=stopped,
            timing=self._timing,
        )
        if isinstance(verdict, Refusal):
            # Too late for this claim: a copy of the job takes the message back when it lapses.
            not_sent(claim.item, verdict.reason, "dropped", result)
            self._after_lease(claim.item, claim.state, now, result)
            return Answered(claim.item, None)
        if verdict is not None:
            return Answered(claim.item, verdict)
        answer = self._provider.send(
            job.message_id, job.phone, task.text, attempt=job.attempt + 1, token=token
        )
        if answer.latency_ms is not None:
            result.provider_latencies_ms.append(answer.latency_ms)
        done_at = self._clock()
        decision = lifecycle.on_answer(
            claim.state,
            lifecycle.Answer(answer.outcome, answer.detail),
            task=facts(task),
            done_at=done_at,
            policy=self._policy,
            delay_seconds=self._policy.delay_seconds(claim.state.attempts + 1, self._rng),
            timing=self._timing,
        )
        return Answered(claim.item, decision)

    # --- after the calls --------------------------------------------------------------

    def _record(self, answered: list[Answered], tasks: BatchTasks, result: BatchResult) -> None:
        """Write the batch's answers, per task (final statuses in one transaction)."""
        by_task: dict[int, list[tuple[Job, Decision]]] = {}
        for answer in answered:
            if answer.decision is not None:
                by_task.setdefault(answer.item.job.task_id, []).append(
                    (answer.item, answer.decision)
                )
        for task_id, group in by_task.items():
            try:
                done = self._messages.apply(
                    task_id,
                    [decision.change for _, decision in group],
                    self._clock(),
                    expires_at=self._expiry(tasks.get(task_id)),
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
        item: Job,
        decision: Decision,
        written: bool,
        *,
        tasks: BatchTasks,
        now: datetime,
        result: BatchResult,
    ) -> None:
        job, change = item.job, decision.change
        with logs.bind(task_id=job.task_id, message_id=job.message_id, client_id=job.client_id):
            if not written:
                log.info("outcome not recorded: the message moved on meanwhile")
                result.count("dropped")
                return
            noted(item, change, result, now)
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
