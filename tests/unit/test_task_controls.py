"""Campaign controls (issue 18), pure: the message lifecycle's hold, cancel, suppress and
last check, and the task rules of pause, resume and cancel."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.domain.lifecycle import (
    Change,
    Decision,
    JobFacts,
    MessageState,
    Phase,
    Refusal,
    Step,
    TaskFacts,
    Timing,
    cancel,
    created,
    hold,
    last_check,
    ms,
    on_job,
    suppress,
    sweep_cancelled,
    wake,
)
from chalicelib.domain.messages import MessageStatus
from chalicelib.domain.tasks import (
    Control,
    Task,
    TaskStatus,
    check_update_allowed,
    control_target,
    effective_status,
)
from chalicelib.errors import Conflict

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
NOW_MS = ms(NOW)
END = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
TIMING = Timing(
    lease=timedelta(seconds=60),
    park_after=timedelta(minutes=15),
    wake_lead=timedelta(seconds=60),
    watchdog=timedelta(seconds=60),
)
WATCHDOG_MS = 60_000
LEASE_MS = 60_000
CONNECT = timedelta(seconds=2)
CALL = CONNECT + timedelta(seconds=10)

TASK = TaskFacts(deleted=False, end=END)
PAUSED = TaskFacts(deleted=False, end=END, paused=True)
CANCELLED = TaskFacts(deleted=False, end=END, cancelled=True)
# Stored both ways: a paused task that is then cancelled is read as cancelled first.
PAUSED_AND_CANCELLED = TaskFacts(deleted=False, end=END, paused=True, cancelled=True)
DELETED_CANCELLED = TaskFacts(deleted=True, end=END, paused=True, cancelled=True)
FINAL = [
    MessageStatus.SENT,
    MessageStatus.FAILED,
    MessageStatus.EXPIRED,
    MessageStatus.CANCELLED,
    MessageStatus.SUPPRESSED,
]


def pending(phase: Phase = Phase.QUEUED, generation: int = 4, **fields: Any) -> MessageState:
    return replace(created(7), phase=phase, generation=generation, **fields)


def claimed(until_ms: int = NOW_MS + LEASE_MS, generation: int = 4, **fields: Any) -> MessageState:
    return pending(Phase.CLAIMED, generation, claimed_until_ms=until_ms, **fields)


def final(status: MessageStatus) -> MessageState:
    return replace(created(7), status=status, phase=Phase.DONE, generation=4)


def decided(verdict: Decision | Refusal | None) -> Decision:
    assert isinstance(verdict, Decision), verdict
    return verdict


def job_at(state: MessageState, not_before_ms: int | None = None) -> JobFacts:
    return JobFacts(state.generation, not_before_ms)


def assert_final(change: Change, before: MessageState, status: MessageStatus, step: Step) -> None:
    """A final status, written conditional on the generation read, nothing left to do."""
    assert change.step is step
    assert change.before == before
    assert change.expect_generation == before.generation
    assert change.status_changed
    assert not change.outcome_only
    assert not change.sent
    assert change.after == replace(
        before,
        status=status,
        phase=Phase.DONE,
        claimed_until_ms=None,
        wake_ms=None,
        not_before_ms=None,
    )


# --- hold -------------------------------------------------------------------------------


HOLDABLE_AS_WINDOW_WAIT = [
    pending(Phase.QUEUED),
    pending(Phase.QUEUED, wake_ms=NOW_MS + WATCHDOG_MS),
    claimed(),
    claimed(attempts=2, last_error="HTTP 503"),
    pending(Phase.WINDOW_WAIT, not_before_ms=NOW_MS + 600_000, wake_ms=NOW_MS + 660_000),
    pending(Phase.WINDOW_WAIT, not_before_ms=ms(END), wake_ms=ms(END)),
]


@pytest.mark.parametrize("state", HOLDABLE_AS_WINDOW_WAIT)
def test_hold_waits_in_the_window_phase_with_no_due_time_and_a_watchdog(
    state: MessageState,
) -> None:
    change = hold(state, END, now_ms=NOW_MS, timing=TIMING)
    assert change.step is Step.HOLD
    assert change.reason == "the task is paused"
    assert change.expect_generation == state.generation
    assert not change.status_changed
    assert not change.outcome_only
    assert change.after == replace(
        state,
        phase=Phase.WINDOW_WAIT,
        generation=state.generation + 1,  # any other copy of its job is stale
        claimed_until_ms=None,
        # A paused task's messages are left alone; once it runs again, this wake time is
        # the way forward of a hold written after the resume's pass (tests/unit/
        # test_engine_races.py).
        wake_ms=NOW_MS + WATCHDOG_MS,
        not_before_ms=None,
    )
    assert change.after.pending
    assert not change.after.held_at(NOW_MS)


@pytest.mark.parametrize("due_ms", [NOW_MS - 1, NOW_MS + 45_000, ms(END) + 1])
def test_hold_keeps_a_retrys_backoff(due_ms: int) -> None:
    state = pending(
        Phase.RETRY_WAIT, attempts=1, not_before_ms=due_ms, wake_ms=due_ms + WATCHDOG_MS
    )
    change = hold(state, END, now_ms=NOW_MS, timing=TIMING)
    assert change.after == replace(
        state, generation=5, wake_ms=NOW_MS + WATCHDOG_MS, not_before_ms=due_ms
    )
    assert change.after.phase is Phase.RETRY_WAIT


# --- cancel, suppress, sweep_cancelled --------------------------------------------------


ANY_PENDING = [
    pending(Phase.QUEUED),
    claimed(),
    claimed(until_ms=NOW_MS - 1),
    pending(Phase.RETRY_WAIT, attempts=2, not_before_ms=NOW_MS + 1, wake_ms=NOW_MS + 60_001),
    pending(Phase.WINDOW_WAIT, not_before_ms=ms(END), wake_ms=ms(END)),
]


@pytest.mark.parametrize("state", ANY_PENDING)
def test_cancel_makes_any_pending_message_cancelled(state: MessageState) -> None:
    change = cancel(state)
    assert change.reason == "the task was cancelled"
    assert_final(change, state, MessageStatus.CANCELLED, Step.CANCEL)


@pytest.mark.parametrize("state", ANY_PENDING)
def test_suppress_makes_any_pending_message_suppressed(state: MessageState) -> None:
    change = suppress(state)
    assert change.reason == "the phone is on the stop list"
    assert_final(change, state, MessageStatus.SUPPRESSED, Step.SUPPRESS)


@pytest.mark.parametrize("state", [s for s in ANY_PENDING if not s.held_at(NOW_MS)])
def test_sweep_cancelled_cancels_what_no_live_sender_holds(state: MessageState) -> None:
    change = sweep_cancelled(state, NOW_MS)
    assert isinstance(change, Change), change
    assert_final(change, state, MessageStatus.CANCELLED, Step.CANCEL)


@pytest.mark.parametrize("until_ms", [NOW_MS + 1, NOW_MS + LEASE_MS])
def test_sweep_cancelled_refuses_a_live_claim(until_ms: int) -> None:
    # Its sender cancels it at its last check, or its lease lapses and a later sweep does.
    assert sweep_cancelled(claimed(until_ms), NOW_MS) == Refusal("a sender holds it")
    assert isinstance(sweep_cancelled(claimed(until_ms), until_ms), Change)


@pytest.mark.parametrize("status", FINAL)
def test_sweep_cancelled_leaves_a_final_message(status: MessageStatus) -> None:
    assert sweep_cancelled(final(status), NOW_MS) == Refusal(f"message already {status.value}")


# --- on_job: the order of the rules ---------------------------------------------------


def judge(task: TaskFacts, now: datetime = NOW, *, stopped: bool = False) -> Decision | Refusal:
    state = pending()
    return on_job(state, job_at(state), task, now, opening=None, timing=TIMING, stopped=stopped)


AFTER_END = END + timedelta(milliseconds=1)


@pytest.mark.parametrize(
    ("task", "now", "stopped", "expected"),
    [
        # deleted first: nothing is written for a task that is gone
        (DELETED_CANCELLED, AFTER_END, True, None),
        (replace(PAUSED, deleted=True), NOW, True, None),
        # then cancelled, even after the end or with a stopped phone
        (CANCELLED, NOW, False, Step.CANCEL),
        (CANCELLED, AFTER_END, True, Step.CANCEL),
        (PAUSED_AND_CANCELLED, NOW, True, Step.CANCEL),
        # then the end, paused or stopped
        (PAUSED, END, True, Step.EXPIRE),
        (TASK, AFTER_END, True, Step.EXPIRE),
        # then the stop list, paused or not
        (PAUSED, NOW, True, Step.SUPPRESS),
        (TASK, NOW, True, Step.SUPPRESS),
        # then the pause
        (PAUSED, NOW, False, Step.HOLD),
        # and only then a claim
        (TASK, NOW, False, Step.CLAIM),
    ],
)
def test_on_job_rules_apply_deleted_cancelled_end_stopped_paused(
    task: TaskFacts, now: datetime, stopped: bool, expected: Step | None
) -> None:
    verdict = judge(task, now, stopped=stopped)
    if expected is None:
        assert verdict == Refusal("task deleted")
        return
    decision = decided(verdict)
    assert decision.change.step is expected
    assert decision.call is (expected is Step.CLAIM)
    assert decision.queue_at_ms is None  # none of the controls queues a job


@pytest.mark.parametrize("opening", [None, NOW + timedelta(minutes=5), END + timedelta(hours=1)])
def test_on_job_of_a_paused_task_holds_whatever_the_window(opening: datetime | None) -> None:
    state = pending(wake_ms=NOW_MS + WATCHDOG_MS)
    decision = decided(on_job(state, job_at(state), PAUSED, NOW, opening=opening, timing=TIMING))
    assert not decision.call
    assert decision.queue_at_ms is None
    assert decision.change == hold(state, END, now_ms=NOW_MS, timing=TIMING)


def test_on_job_of_a_paused_task_holds_an_early_retry_copy_with_its_backoff() -> None:
    due = NOW_MS + 20 * 60_000
    state = pending(Phase.RETRY_WAIT, attempts=1, not_before_ms=due, wake_ms=due + WATCHDOG_MS)
    decision = decided(on_job(state, job_at(state, due), PAUSED, NOW, opening=None, timing=TIMING))
    assert decision.queue_at_ms is None
    assert decision.change.after == replace(state, generation=5, wake_ms=NOW_MS + WATCHDOG_MS)


# --- last_check -------------------------------------------------------------------------


def checked(
    task: TaskFacts,
    now: datetime = NOW,
    *,
    stopped: bool = False,
    held: MessageState | None = None,
) -> Decision | Refusal | None:
    held = held or claimed(until_ms=ms(now) + LEASE_MS)
    return last_check(held, task, now, connect=CONNECT, call=CALL, stopped=stopped, timing=TIMING)


def test_last_check_calls_when_nothing_stands_in_the_way() -> None:
    assert checked(TASK) is None


@pytest.mark.parametrize("task", [DELETED_CANCELLED, replace(TASK, deleted=True)])
def test_last_check_writes_nothing_for_a_deleted_task(task: TaskFacts) -> None:
    assert checked(task, stopped=True) == Refusal("task deleted")


@pytest.mark.parametrize(
    ("now", "stopped"), [(NOW, False), (NOW, True), (END - CONNECT, True), (AFTER_END, False)]
)
def test_last_check_cancels_the_held_message_of_a_cancelled_task(
    now: datetime, stopped: bool
) -> None:
    held = claimed(until_ms=ms(now) + LEASE_MS)
    decision = decided(checked(PAUSED_AND_CANCELLED, now, stopped=stopped, held=held))
    assert not decision.call
    assert_final(decision.change, held, MessageStatus.CANCELLED, Step.CANCEL)


@pytest.mark.parametrize("task", [TASK, PAUSED])
@pytest.mark.parametrize("now", [END - CONNECT, END, AFTER_END])
def test_last_check_expires_when_the_call_could_not_reach_the_provider_before_the_end(
    task: TaskFacts, now: datetime
) -> None:
    held = claimed(until_ms=ms(now) + LEASE_MS)
    decision = decided(checked(task, now, stopped=True, held=held))
    assert decision.change.step is Step.EXPIRE
    assert decision.change.after.status is MessageStatus.EXPIRED


@pytest.mark.parametrize("task", [TASK, PAUSED])
def test_last_check_suppresses_a_stopped_phone_paused_or_not(task: TaskFacts) -> None:
    held = claimed()
    decision = decided(checked(task, stopped=True, held=held))
    assert not decision.call
    assert_final(decision.change, held, MessageStatus.SUPPRESSED, Step.SUPPRESS)


def test_last_check_suppresses_even_when_the_claim_is_too_short_to_call_on() -> None:
    held = claimed(until_ms=NOW_MS + 1_000)
    decision = decided(checked(TASK, stopped=True, held=held))
    assert decision.change.step is Step.SUPPRESS


@pytest.mark.parametrize("until_ms", [NOW_MS + LEASE_MS, NOW_MS + 1_000])
def test_last_check_holds_the_message_of_a_paused_task(until_ms: int) -> None:
    held = claimed(until_ms=until_ms, attempts=1)
    decision = decided(checked(PAUSED, held=held))
    assert not decision.call
    assert decision.queue_at_ms is None
    assert decision.change == hold(held, END, now_ms=NOW_MS, timing=TIMING)
    assert decision.change.after.phase is Phase.WINDOW_WAIT
    assert decision.change.after.wake_ms == NOW_MS + WATCHDOG_MS


def test_last_check_refuses_a_claim_too_short_to_call_on() -> None:
    held = claimed(until_ms=NOW_MS + 1_000)
    assert checked(TASK, held=held) == Refusal("the claim could lapse during the call")


# --- a resume wakes a held message ------------------------------------------------------


def test_a_resume_queues_a_held_message_at_once() -> None:
    held = hold(pending(Phase.QUEUED), END, now_ms=NOW_MS, timing=TIMING).after
    decision = decided(wake(held, NOW_MS, end=END, rejudge=True, timing=TIMING))
    assert decision.queue_at_ms == NOW_MS
    assert decision.change.step is Step.WAKE
    assert decision.change.after == replace(
        held,
        phase=Phase.QUEUED,
        generation=held.generation + 1,
        wake_ms=NOW_MS + WATCHDOG_MS,
        not_before_ms=None,
    )


def test_a_resume_queues_a_held_retry_at_its_backoff() -> None:
    due = NOW_MS + 45_000
    waiting = pending(Phase.RETRY_WAIT, attempts=1, not_before_ms=due, wake_ms=due + WATCHDOG_MS)
    held = hold(waiting, END, now_ms=NOW_MS, timing=TIMING).after
    decision = decided(wake(held, NOW_MS, end=END, rejudge=True, timing=TIMING))
    assert decision.queue_at_ms == due
    assert decision.change.after.not_before_ms == due
    assert decision.change.after.wake_ms == due + WATCHDOG_MS


def test_a_held_message_is_woken_at_its_watchdog_once_its_task_runs() -> None:
    """The dispatcher leaves a paused task alone; once it runs, a hold that no resume's
    pass saw is woken at its wake time like any waiting message."""
    held = hold(pending(), END, now_ms=NOW_MS, timing=TIMING).after
    due = NOW_MS + WATCHDOG_MS
    assert wake(held, due - 1, end=END, rejudge=False, timing=TIMING) == Refusal(
        "not due to be woken yet"
    )
    assert decided(wake(held, due, end=END, rejudge=False, timing=TIMING)).queue_at_ms == due


# --- the task's rules -------------------------------------------------------------------


T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
START = T0 + timedelta(hours=1)
T_END = T0 + timedelta(hours=2)
BEFORE = T0
DURING = START + timedelta(minutes=30)
AFTER = T_END + timedelta(seconds=1)


def task(status: TaskStatus) -> Task:
    return Task(
        start=START,
        end=T_END,
        text="Hi",
        codes=(),
        tags=(),
        window=None,
        id=1,
        status=status,
        created_at=T0,
        updated_at=T0,
        version=1,
    )


S = TaskStatus


@pytest.mark.parametrize(
    ("stored", "now", "control", "target"),
    [
        (S.SCHEDULED, BEFORE, Control.PAUSE, S.PAUSED),
        (S.SCHEDULED, DURING, Control.PAUSE, S.PAUSED),  # running by its times
        (S.RUNNING, DURING, Control.PAUSE, S.PAUSED),
        (S.PAUSED, BEFORE, Control.RESUME, S.SCHEDULED),
        (S.PAUSED, START, Control.RESUME, S.RUNNING),
        (S.PAUSED, DURING, Control.RESUME, S.RUNNING),
        (S.SCHEDULED, BEFORE, Control.CANCEL, S.CANCELLED),
        (S.RUNNING, DURING, Control.CANCEL, S.CANCELLED),
        (S.PAUSED, BEFORE, Control.CANCEL, S.CANCELLED),
        (S.PAUSED, DURING, Control.CANCEL, S.CANCELLED),
    ],
)
def test_control_targets(stored: TaskStatus, now: datetime, control: Control, target: S) -> None:
    assert control_target(control, task(stored), now) is target


@pytest.mark.parametrize(
    ("stored", "now", "control", "message"),
    [
        (S.PAUSED, DURING, Control.PAUSE, "The task is paused; only a scheduled or running"),
        (S.FINISHED, DURING, Control.PAUSE, "The task is finished; only a scheduled or running"),
        (S.RUNNING, AFTER, Control.PAUSE, "The task is finished; only a scheduled or running"),
        (S.PAUSED, AFTER, Control.PAUSE, "The task is finished; only a scheduled or running"),
        (S.CANCELLED, DURING, Control.PAUSE, "The task is cancelled; only a scheduled or runn"),
        (S.SCHEDULED, BEFORE, Control.RESUME, "The task is scheduled; only a paused task resumes"),
        (S.RUNNING, DURING, Control.RESUME, "The task is running; only a paused task resumes"),
        (S.FINISHED, AFTER, Control.RESUME, "The task is finished; only a paused task resumes"),
        # the design's choice: a paused task whose end passed is finished, for good
        (S.PAUSED, AFTER, Control.RESUME, "The task is finished; only a paused task resumes"),
        (S.CANCELLED, DURING, Control.RESUME, "The task is cancelled; only a paused task"),
        (S.FINISHED, DURING, Control.CANCEL, "The task is finished; it can no longer be canc"),
        (S.RUNNING, AFTER, Control.CANCEL, "The task is finished; it can no longer be canc"),
        (S.PAUSED, AFTER, Control.CANCEL, "The task is finished; it can no longer be canc"),
        (S.CANCELLED, BEFORE, Control.CANCEL, "The task is cancelled; it can no longer be ca"),
        (S.CANCELLED, AFTER, Control.CANCEL, "The task is cancelled; it can no longer be ca"),
    ],
)
def test_control_conflicts(stored: S, now: datetime, control: Control, message: str) -> None:
    with pytest.raises(Conflict) as raised:
        control_target(control, task(stored), now)
    assert str(raised.value.args[0]).startswith(message)


@pytest.mark.parametrize("control", list(Control))
@pytest.mark.parametrize("stored", list(TaskStatus))
@pytest.mark.parametrize("now", [BEFORE, START, DURING, T_END, AFTER])
def test_every_control_either_moves_the_task_or_is_a_conflict(
    control: Control, stored: TaskStatus, now: datetime
) -> None:
    status = task(stored).status_at(now)
    allowed = {
        Control.PAUSE: {S.SCHEDULED, S.RUNNING},
        Control.RESUME: {S.PAUSED},
        Control.CANCEL: {S.SCHEDULED, S.RUNNING, S.PAUSED},
    }[control]
    if status in allowed:
        assert control_target(control, task(stored), now) in {
            S.PAUSED,
            S.CANCELLED,
            S.SCHEDULED,
            S.RUNNING,
        }
    else:
        with pytest.raises(Conflict):
            control_target(control, task(stored), now)


@pytest.mark.parametrize(
    ("stored", "now", "expected"),
    [
        (S.PAUSED, BEFORE, S.PAUSED),
        (S.PAUSED, DURING, S.PAUSED),
        (S.PAUSED, T_END, S.FINISHED),  # its end still applies: finished, paused or not
        (S.PAUSED, AFTER, S.FINISHED),
        (S.CANCELLED, BEFORE, S.CANCELLED),
        (S.CANCELLED, DURING, S.CANCELLED),
        (S.CANCELLED, AFTER, S.CANCELLED),  # kept as cancelled with its statistics
    ],
)
def test_effective_status_of_paused_and_cancelled(stored: S, now: datetime, expected: S) -> None:
    assert effective_status(stored, START, T_END, now) is expected
    assert task(stored).status_at(now) is expected


@pytest.mark.parametrize(
    ("stored", "now", "expected"),
    [
        (S.PAUSED, BEFORE, S.SCHEDULED),
        (S.PAUSED, START, S.RUNNING),
        (S.PAUSED, DURING, S.RUNNING),
        (S.PAUSED, AFTER, S.FINISHED),
        (S.SCHEDULED, BEFORE, S.SCHEDULED),
        (S.RUNNING, DURING, S.RUNNING),
        (S.CANCELLED, DURING, S.CANCELLED),
    ],
)
def test_schedule_at_says_where_the_times_put_a_task_paused_or_not(
    stored: S, now: datetime, expected: S
) -> None:
    assert task(stored).schedule_at(now) is expected


def test_a_paused_task_before_its_start_changes_like_a_scheduled_one() -> None:
    status = task(S.PAUSED).schedule_at(BEFORE)
    check_update_allowed(status, {"text", "codes", "tags", "start", "end", "window"})


def test_a_paused_running_task_changes_only_its_end_and_window() -> None:
    status = task(S.PAUSED).schedule_at(DURING)
    check_update_allowed(status, {"end", "window"})
    with pytest.raises(Conflict, match="refused: text"):
        check_update_allowed(status, {"text", "end"})


def test_a_cancelled_task_never_changes() -> None:
    for now in (BEFORE, DURING, AFTER):
        status = task(S.CANCELLED).status_at(now)
        with pytest.raises(Conflict, match="cancelled"):
            check_update_allowed(status, set())
