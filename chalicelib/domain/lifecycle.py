"""A message's life, as one state machine (drawn in ``docs/message-lifecycle.md``).

Pure code: no I/O and no clock reads. The sender and the dispatcher describe what
happened (an event) with the state they read; the functions here answer what to do: a
:class:`Change` for storage to write, conditional on the state still being the one
read, or a refusal with its reason. Storage never decides; it only writes what was
decided, or reports that the state moved on meanwhile.

A pending message is always in one of four phases, each with its way forward:

- ``queued``: a job copy of the current generation is in the queue (or the fan-out
  checkpoint, which has not moved past it, will queue it again);
- ``claimed``: a sender holds it for a provider call until ``claimed_until``; if that
  sender dies, the dispatcher takes it back when the lease has lapsed (``wake_ms``);
- ``retry_wait``: a delayed job waits out the retry backoff; the dispatcher wakes it
  if that job never comes (``wake_ms`` a little after it is due);
- ``window_wait``: outside its send window; a delayed job waits for a short opening,
  the dispatcher wakes it for a long one (or after a change of window or end time).

The generation moves on every write that changes who may act on a pending message, so
a write conditional on the generation read refuses any stale or concurrent actor.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from chalicelib.domain.messages import MessageStatus, RetryPolicy
from chalicelib.domain.provider import Outcome


class Step(enum.StrEnum):
    """What a change does: the label in logs and in the sender's outcome counts."""

    CLAIM = "claimed"
    WAIT = "deferred"  # a delayed job waits (retry backoff is RETRY)
    PARK = "parked"
    SET_ASIDE = "set_aside"  # nothing before the end: a later end or window revives it
    RETRY = "retry"
    SENT = "sent"
    FAIL = "failed"
    EXPIRE = "expired"
    HOLD = "held"  # its task is paused: nothing until a resume wakes it
    CANCEL = "cancelled"
    SUPPRESS = "suppressed"
    THROTTLE = "throttled"  # the rate limits gave it no slot in time: queued again
    WAKE = "woken"
    WATCH = "watched"


class Phase(enum.StrEnum):
    QUEUED = "queued"
    CLAIMED = "claimed"
    RETRY_WAIT = "retry_wait"
    WINDOW_WAIT = "window_wait"
    DONE = "done"  # any final status


_WAITS = (Phase.RETRY_WAIT, Phase.WINDOW_WAIT)


def ms(moment: datetime) -> int:
    """Epoch milliseconds: how storage and jobs hold instants."""
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class MessageState:
    """What storage holds about one message."""

    client_id: int
    status: MessageStatus
    phase: Phase
    generation: int
    attempts: int = 0
    claimed_until_ms: int | None = None
    # When the dispatcher must look at this message unless something moved it first.
    wake_ms: int | None = None
    # The earliest time of the next attempt (retry backoff, window opening).
    not_before_ms: int | None = None
    last_error: str | None = None

    @property
    def pending(self) -> bool:
        return self.status is MessageStatus.PENDING

    def held_at(self, now_ms: int) -> bool:
        """A live sender holds it: its provider call may be in flight."""
        return (
            self.phase is Phase.CLAIMED
            and self.claimed_until_ms is not None
            and self.claimed_until_ms > now_ms
        )


def created(client_id: int) -> MessageState:
    """Fan-out: a new message, queued at generation 0."""
    return MessageState(client_id, MessageStatus.PENDING, Phase.QUEUED, 0)


@dataclass(frozen=True)
class Change:
    """A transition to write: ``after`` replaces the message's state, provided that the
    stored state is still pending at ``expect_generation``. ``outcome_only`` relaxes
    that to "still pending" (a provider's verdict stands whoever holds the message) and
    leaves the stored generation as it is (it never goes back)."""

    before: MessageState
    after: MessageState
    step: Step
    reason: str
    outcome_only: bool = False
    sent: bool = False  # stamp sent_at

    @property
    def client_id(self) -> int:
        return self.after.client_id

    @property
    def expect_generation(self) -> int:
        return self.before.generation

    @property
    def status_changed(self) -> bool:
        return self.before.status is not self.after.status


@dataclass(frozen=True)
class Refusal:
    """Nothing to write; the reason is logged."""

    reason: str


@dataclass(frozen=True)
class TaskFacts:
    """What the lifecycle needs to know of the message's task, read by the caller."""

    deleted: bool
    end: datetime
    paused: bool = False
    cancelled: bool = False


# --- a job arrives ----------------------------------------------------------------------


@dataclass(frozen=True)
class JobFacts:
    generation: int
    not_before_ms: int | None


@dataclass(frozen=True)
class Timing:
    """Settings the decisions depend on."""

    lease: timedelta
    park_after: timedelta  # a longer wait for a window parks instead of a delayed job
    wake_lead: timedelta  # how early the dispatcher looks ahead when waking
    watchdog: timedelta  # how late a delayed job may be before the dispatcher steps in


def current_copy(state: MessageState | None, job: JobFacts, now_ms: int) -> Refusal | None:
    """Is this job the copy that may act on the message? (Refusal if not.)

    The current copy carries the stored generation. Once a claim's lease has lapsed (its
    sender died, or gave it up), any older copy may take over: the claiming sender's own
    job comes back from the queue when its sender dies, and that is the claim's way
    forward (a claim writes no wake time, see ``on_job``).
    """
    if state is None:
        return Refusal("message unknown")
    if not state.pending:
        return Refusal(f"message already {state.status.value}")
    if job.generation == state.generation and state.phase is not Phase.CLAIMED:
        return None
    if (
        job.generation < state.generation
        and state.phase is Phase.CLAIMED
        and not state.held_at(now_ms)
    ):
        return None
    if state.held_at(now_ms):
        return Refusal("another sender holds it")
    return Refusal("stale copy")


@dataclass(frozen=True)
class Decision:
    """What to do with a current job copy: write ``change``; then, if ``call``, call the
    provider; if ``queue_at_ms`` is set, queue the next copy due then."""

    change: Change
    call: bool = False
    queue_at_ms: int | None = None


def on_job(  # noqa: PLR0911 - one return per rule, in the order they apply
    state: MessageState,
    job: JobFacts,
    task: TaskFacts,
    now: datetime,
    *,
    opening: datetime | None,
    timing: Timing,
    stopped: bool = False,
) -> Decision | Refusal:
    """A current copy of the job arrived (see :func:`current_copy`). ``opening`` is when
    the client's send window next opens, None when open now (or no window); ``stopped``
    says the client's phone is on the stop list."""
    now_ms = ms(now)
    if task.deleted:
        return Refusal("task deleted")
    if task.cancelled:
        return Decision(cancel(state))
    if now >= task.end:
        return Decision(expire(state, "the task's end has passed"))
    if stopped:
        return Decision(suppress(state))
    if task.paused:
        return Decision(hold(state, task.end, now_ms=now_ms, timing=timing))
    if job.not_before_ms is not None and job.not_before_ms > now_ms:
        # Early (the queue caps delays at 15 minutes): wait again, same reason as before.
        phase = state.phase if state.phase in _WAITS else Phase.RETRY_WAIT
        if state.phase not in _WAITS and not state.attempts:
            phase = Phase.WINDOW_WAIT
        return _wait(
            state,
            state,
            phase,
            job.not_before_ms,
            end=task.end,
            timing=timing,
            reason="not due yet",
        )
    if opening is None:
        until = now_ms + _ms(timing.lease)
        after = replace(
            state,
            phase=Phase.CLAIMED,
            generation=state.generation + 1,
            claimed_until_ms=until,
            # No wake time: the claiming job stays in the queue (in flight) until its
            # sender is done, and comes back if the sender dies; writing one would cost
            # two index writes a message (this claim, and the final status).
            wake_ms=None,
            not_before_ms=None,
        )
        return Decision(Change(state, after, Step.CLAIM, "claimed for a provider call"), call=True)
    if opening >= task.end:
        return _set_aside(
            state, state, Phase.WINDOW_WAIT, ms(opening), "window opens after the end"
        )
    if opening - now > timing.park_after:
        return _park(
            state,
            state,
            Phase.WINDOW_WAIT,
            ms(opening),
            wake_ms=ms(opening) - _ms(timing.wake_lead),
            reason="send window opens later",
        )
    return _wait(
        state,
        state,
        Phase.WINDOW_WAIT,
        ms(opening),
        end=task.end,
        timing=timing,
        reason="outside send window",
    )


def _wait(
    before: MessageState,
    state: MessageState,
    phase: Phase,
    due_ms: int,
    *,
    end: datetime,
    timing: Timing,
    step: Step = Step.WAIT,
    reason: str,
) -> Decision:
    """Wait with a delayed job; the dispatcher steps in if the job is lost."""
    wake_ms = watchdog(due_ms, end, timing)
    return _hold(before, state, phase, due_ms, wake_ms=wake_ms, step=step, reason=reason, job=True)


def _park(
    before: MessageState,
    state: MessageState,
    phase: Phase,
    due_ms: int,
    *,
    wake_ms: int,
    step: Step = Step.PARK,
    reason: str,
) -> Decision:
    """Wait with no job: the dispatcher wakes it at ``wake_ms``."""
    return _hold(before, state, phase, due_ms, wake_ms=wake_ms, step=step, reason=reason, job=False)


def _hold(
    before: MessageState,
    state: MessageState,
    phase: Phase,
    due_ms: int,
    *,
    wake_ms: int,
    step: Step,
    reason: str,
    job: bool,
) -> Decision:
    after = replace(
        state,
        phase=phase,
        generation=before.generation + 1,
        claimed_until_ms=None,
        wake_ms=wake_ms,
        not_before_ms=due_ms,
    )
    return Decision(Change(before, after, step, reason), queue_at_ms=due_ms if job else None)


def _set_aside(
    before: MessageState, state: MessageState, phase: Phase, due_ms: int, reason: str
) -> Decision:
    """Nothing to do before the end (``due_ms`` is at or after it): no job, and a wake time
    the dispatcher never reaches. A later end or a new window brings it back (a rejudge);
    otherwise the sweep at the end expires it."""
    return _park(before, state, phase, due_ms, wake_ms=due_ms, step=Step.SET_ASIDE, reason=reason)


# --- right before the call --------------------------------------------------------------


def may_call(
    task: TaskFacts,
    now: datetime,
    *,
    connect: timedelta,
    call: timedelta,
    claimed_until_ms: int | None,
) -> str | None:
    """The last check before a provider call, made after everything slow (the token read)
    and with a freshly read task: why not to call, or None. A call must be able to
    reach the provider before the end (``connect`` is counted in), and end before the
    claim lapses (``call``: connect and read), or another copy could call meanwhile."""
    if task.deleted:
        return "task deleted"
    if task.cancelled:
        return "the task was cancelled"
    if now + connect >= task.end:
        return "the task's end has passed"
    if task.paused:
        return "the task is paused"
    if claimed_until_ms is None or ms(now + call) >= claimed_until_ms:
        return "the claim could lapse during the call"
    return None


def last_check(
    held: MessageState,
    task: TaskFacts,
    now: datetime,
    *,
    connect: timedelta,
    call: timedelta,
    stopped: bool,
    timing: Timing,
) -> Decision | Refusal | None:
    """The holder's last check before its call (:func:`may_call`), and what follows from
    a refusal: None to call; a change to write (the end passed, the task cancelled or
    paused, the phone stopped); or a Refusal when nothing may be written (the task is
    gone) or the claim is too short to call on (its job comes back at the lease's end)."""
    reason = may_call(task, now, connect=connect, call=call, claimed_until_ms=held.claimed_until_ms)
    if task.deleted:
        return Refusal("task deleted")
    if task.cancelled:
        return Decision(cancel(held))
    if reason is not None and now + connect >= task.end:
        return Decision(expire(held, reason))
    if stopped:
        return Decision(suppress(held))
    if task.paused:
        return Decision(hold(held, task.end, now_ms=ms(now), timing=timing))
    return None if reason is None else Refusal(reason)


# --- the provider answered --------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    outcome: Outcome
    detail: str


def on_answer(
    held: MessageState,
    answer: Answer,
    *,
    task: TaskFacts,
    done_at: datetime,
    policy: RetryPolicy,
    delay_seconds: float,
    timing: Timing,
) -> Decision:
    """The holder's call came back: sent, failed for good, or a retry with backoff."""
    attempt = held.attempts + 1
    base = replace(held, attempts=attempt, claimed_until_ms=None)
    if answer.outcome is Outcome.SENT:
        after = _final(base, MessageStatus.SENT)
        return Decision(Change(held, after, Step.SENT, "sent", outcome_only=True, sent=True))
    if answer.outcome is Outcome.PERMANENT or policy.gives_up_after(attempt):
        reason = "permanent error" if answer.outcome is Outcome.PERMANENT else "out of attempts"
        after = _final(replace(base, last_error=answer.detail), MessageStatus.FAILED)
        return Decision(Change(held, after, Step.FAIL, reason, outcome_only=True))
    retry_at = done_at + timedelta(seconds=delay_seconds)
    failed = replace(base, last_error=answer.detail)
    if retry_at >= task.end:
        return _set_aside(
            held, failed, Phase.RETRY_WAIT, ms(retry_at), "next attempt after the end"
        )
    return _wait(
        held,
        failed,
        Phase.RETRY_WAIT,
        ms(retry_at),
        end=task.end,
        timing=timing,
        step=Step.RETRY,
        reason="retry scheduled",
    )


# --- the dispatcher ---------------------------------------------------------------------


def wake(
    state: MessageState, now_ms: int, *, end: datetime, rejudge: bool, timing: Timing
) -> Decision | Refusal:
    """The dispatcher found it due to be looked at (``wake_ms``), or the task's window or
    end changed (``rejudge``): queue a new current copy. A message held by a live sender
    is left to it; an abandoned claim is taken back. The woken message keeps a wake time
    in case its new job is lost too."""
    if not state.pending:
        return Refusal(f"message already {state.status.value}")
    if state.held_at(now_ms):
        return Refusal("a sender holds it")
    if rejudge and state.phase is Phase.QUEUED:
        return Refusal("its queued job is judged by the new window and end anyway")
    if not rejudge and (state.wake_ms is None or state.wake_ms > now_ms):
        return Refusal("not due to be woken yet")
    # A retry keeps its backoff; a window wait is judged afresh by the (new) window.
    due = state.not_before_ms
    if state.phase is Phase.CLAIMED or (rejudge and state.phase is Phase.WINDOW_WAIT):
        due = None
    after = replace(
        state,
        phase=Phase.QUEUED,
        generation=state.generation + 1,
        claimed_until_ms=None,
        wake_ms=watchdog(max(due or now_ms, now_ms), end, timing),
        not_before_ms=due,
    )
    reason = "woken after a change of window or end" if rejudge else "woken"
    return Decision(Change(state, after, Step.WAKE, reason), queue_at_ms=due or now_ms)


def watch(state: MessageState, now_ms: int, *, end: datetime, timing: Timing) -> Change | Refusal:
    """The fan-out found a message another run created: its job may be queued already
    (a concurrent run) or never (a run that died). Rather than queue a second copy, give
    it a wake time: if no job takes it by then, the dispatcher queues one."""
    if not state.pending or state.phase is not Phase.QUEUED or state.wake_ms is not None:
        return Refusal("it has a way forward already")
    after = replace(state, wake_ms=watchdog(now_ms, end, timing))
    return Change(state, after, Step.WATCH, "created by another fan-out run")


def expire(state: MessageState, reason: str) -> Change:
    """pending -> expired (the caller checked that the end has passed)."""
    return Change(state, _final(state, MessageStatus.EXPIRED), Step.EXPIRE, reason)


def cancel(state: MessageState) -> Change:
    """pending -> cancelled: its task was cancelled before it was sent."""
    after = _final(state, MessageStatus.CANCELLED)
    return Change(state, after, Step.CANCEL, "the task was cancelled")


def suppress(state: MessageState) -> Change:
    """pending -> suppressed: the phone was on the stop list when its turn came."""
    after = _final(state, MessageStatus.SUPPRESSED)
    return Change(state, after, Step.SUPPRESS, "the phone is on the stop list")


def hold(state: MessageState, end: datetime, *, now_ms: int, timing: Timing) -> Change:
    """The task is paused: the message waits with no job. The dispatcher leaves a paused
    task's messages alone; a resume marks the task to have its waiting messages judged
    again, which wakes it (a retry keeps its backoff), and its wake time, a watchdog
    away, is the way forward of a hold written after that pass (a sender that read the
    task paused just before the resume). At the end, the sweep expires it. A new
    generation: any other copy of its job is stale."""
    phase = state.phase if state.phase is Phase.RETRY_WAIT else Phase.WINDOW_WAIT
    due = state.not_before_ms if phase is Phase.RETRY_WAIT else None
    after = replace(
        state,
        phase=phase,
        generation=state.generation + 1,
        claimed_until_ms=None,
        wake_ms=watchdog(now_ms, end, timing),
        not_before_ms=due,
    )
    return Change(state, after, Step.HOLD, "the task is paused")


def release(held: MessageState, due_ms: int, *, end: datetime, timing: Timing) -> Decision:
    """The holder gives its claim back without a call (the rate limits gave it no slot in
    time): queued again at a new generation for ``due_ms``, with a wake time in case
    that job is lost. No attempt is spent."""
    after = replace(
        held,
        phase=Phase.QUEUED,
        generation=held.generation + 1,
        claimed_until_ms=None,
        wake_ms=watchdog(due_ms, end, timing),
        not_before_ms=None,
    )
    change = Change(held, after, Step.THROTTLE, "rate limited: no slot in time")
    return Decision(change, queue_at_ms=due_ms)


def sweep_cancelled(state: MessageState, now_ms: int) -> Change | Refusal:
    """The task was cancelled: cancel what no live sender holds (a sender holding one
    cancels it at its last check, or its lease lapses and the next sweep does)."""
    if not state.pending:
        return Refusal(f"message already {state.status.value}")
    if state.held_at(now_ms):
        return Refusal("a sender holds it")
    return cancel(state)


def _final(state: MessageState, status: MessageStatus) -> MessageState:
    """A final status: nothing holds it, nothing wakes it, nothing is due."""
    return replace(
        state,
        status=status,
        phase=Phase.DONE,
        claimed_until_ms=None,
        wake_ms=None,
        not_before_ms=None,
    )


def sweep(state: MessageState, now_ms: int) -> Change | Refusal:
    """The task has ended: expire what no live sender holds; wait for calls in flight."""
    if not state.pending:
        return Refusal(f"message already {state.status.value}")
    if state.held_at(now_ms):
        return Refusal("a provider call may be in flight")
    return expire(state, "the task's end has passed")


def watchdog(due_ms: int, end: datetime, timing: Timing) -> int:
    """When the dispatcher steps in for a job due at ``due_ms`` that never came: a
    watchdog after it, but before the end while the job is due before the end."""
    return min(due_ms + _ms(timing.watchdog), max(due_ms, ms(end) - 1))


def _ms(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)
