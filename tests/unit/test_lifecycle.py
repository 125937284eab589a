"""The message lifecycle (issue 14): every transition and every refused transition."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.domain.lifecycle import (
    Answer,
    Change,
    Decision,
    JobFacts,
    MessageState,
    Phase,
    Refusal,
    Step,
    TaskFacts,
    Timing,
    created,
    current_copy,
    expire,
    may_call,
    ms,
    on_answer,
    on_job,
    sweep,
    wake,
    watchdog,
)
from chalicelib.domain.messages import MessageStatus, RetryPolicy
from chalicelib.domain.provider import Outcome

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
NOW_MS = ms(NOW)
END = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
TIMING = Timing(
    lease=timedelta(seconds=60),
    park_after=timedelta(minutes=15),
    wake_lead=timedelta(seconds=60),
    watchdog=timedelta(seconds=60),
)
LEASE_MS = 60_000
WAKE_LEAD_MS = 60_000
WATCHDOG_MS = 60_000
POLICY = RetryPolicy(max_attempts=3, base_seconds=30, cap_seconds=600)
TASK = TaskFacts(deleted=False, end=END)
DELETED = TaskFacts(deleted=True, end=END)
CONNECT = timedelta(seconds=2)
FINAL = [MessageStatus.SENT, MessageStatus.FAILED, MessageStatus.EXPIRED]
WAITING = [Phase.QUEUED, Phase.RETRY_WAIT, Phase.WINDOW_WAIT]


def pending(phase: Phase = Phase.QUEUED, generation: int = 4, **fields: Any) -> MessageState:
    return replace(created(7), phase=phase, generation=generation, **fields)


def claimed(until_ms: int, generation: int = 4, **fields: Any) -> MessageState:
    """A message a sender claimed for a call (with the job copy of ``generation - 1``)."""
    return pending(Phase.CLAIMED, generation, claimed_until_ms=until_ms, **fields)


def final(status: MessageStatus) -> MessageState:
    return replace(created(7), status=status, phase=Phase.DONE, generation=4)


def decided(verdict: Decision | Refusal) -> Decision:
    assert isinstance(verdict, Decision), verdict
    return verdict


def changed(verdict: Change | Refusal) -> Change:
    assert isinstance(verdict, Change), verdict
    return verdict


def job_at(state: MessageState, not_before_ms: int | None = None) -> JobFacts:
    return JobFacts(state.generation, not_before_ms)


def assert_expired(change: Change, before: MessageState) -> None:
    assert change.step is Step.EXPIRE
    assert change.before == before
    assert change.expect_generation == before.generation
    assert change.status_changed
    assert not change.outcome_only
    after = change.after
    assert after.status is MessageStatus.EXPIRED
    assert after.phase is Phase.DONE
    assert after.generation == before.generation
    assert after.claimed_until_ms is None
    assert after.wake_ms is None
    assert after.not_before_ms is None


# --- current_copy -----------------------------------------------------------------------


def test_current_copy_refuses_a_copy_of_an_unknown_message() -> None:
    assert current_copy(None, JobFacts(0, None), NOW_MS) == Refusal("message unknown")


@pytest.mark.parametrize("status", FINAL)
def test_current_copy_refuses_a_copy_of_a_final_message(status: MessageStatus) -> None:
    refusal = current_copy(final(status), JobFacts(4, None), NOW_MS)
    assert refusal == Refusal(f"message already {status.value}")


@pytest.mark.parametrize("phase", WAITING)
def test_current_copy_accepts_the_copy_of_the_current_generation(phase: Phase) -> None:
    state = pending(phase)
    assert current_copy(state, job_at(state), NOW_MS) is None


@pytest.mark.parametrize("generation", [0, 2, 3, 5])
@pytest.mark.parametrize("phase", WAITING)
def test_current_copy_refuses_a_copy_of_another_generation(phase: Phase, generation: int) -> None:
    state = pending(phase, generation=4)
    assert current_copy(state, JobFacts(generation, None), NOW_MS) == Refusal("stale copy")


@pytest.mark.parametrize("lapsed_by_ms", [0, 1, 3_600_000])
def test_the_claiming_copy_takes_over_a_claim_whose_lease_has_lapsed(lapsed_by_ms: int) -> None:
    # Its sender died: the copy it took comes back once the lease is over.
    state = claimed(until_ms=NOW_MS - lapsed_by_ms, generation=4)
    assert current_copy(state, JobFacts(3, None), NOW_MS) is None


def test_the_claiming_copy_is_refused_while_the_lease_holds() -> None:
    state = claimed(until_ms=NOW_MS + 1, generation=4)
    assert current_copy(state, JobFacts(3, None), NOW_MS) == Refusal("another sender holds it")


@pytest.mark.parametrize("generation", [0, 2])
def test_an_older_copy_takes_over_a_lapsed_claim_too(generation: int) -> None:
    # A claim writes no wake time: whichever older copy comes back after the lease (the
    # claiming copy of a take-over is two behind) carries the message on.
    state = claimed(until_ms=NOW_MS - 1, generation=4)
    assert current_copy(state, JobFacts(generation, None), NOW_MS) is None
    held = claimed(until_ms=NOW_MS + 1, generation=4)
    assert current_copy(held, JobFacts(generation, None), NOW_MS) == Refusal(
        "another sender holds it"
    )


@pytest.mark.parametrize(
    ("until_ms", "reason"),
    [(NOW_MS + LEASE_MS, "another sender holds it"), (NOW_MS - 1, "stale copy")],
)
def test_a_current_generation_copy_of_a_claimed_message_is_refused(
    until_ms: int, reason: str
) -> None:
    state = claimed(until_ms=until_ms, generation=4)
    assert current_copy(state, JobFacts(4, None), NOW_MS) == Refusal(reason)


# --- on_job -----------------------------------------------------------------------------


@pytest.mark.parametrize("now", [NOW, END + timedelta(hours=1)])
def test_on_job_refuses_a_deleted_task(now: datetime) -> None:
    state = pending()
    verdict = on_job(state, job_at(state), DELETED, now, opening=None, timing=TIMING)
    assert verdict == Refusal("task deleted")


@pytest.mark.parametrize("now", [END, END + timedelta(milliseconds=1), END + timedelta(days=1)])
@pytest.mark.parametrize("opening", [None, END + timedelta(hours=1)])
def test_on_job_at_or_after_the_end_expires_the_message(
    now: datetime, opening: datetime | None
) -> None:
    state = pending(Phase.RETRY_WAIT, attempts=1, wake_ms=ms(now), not_before_ms=ms(now))
    decision = decided(on_job(state, job_at(state), TASK, now, opening=opening, timing=TIMING))
    assert not decision.call
    assert decision.queue_at_ms is None
    assert_expired(decision.change, state)


def test_on_job_expires_a_lapsed_claim_taken_over_after_the_end() -> None:
    state = claimed(until_ms=ms(END) - 1)
    decision = decided(on_job(state, JobFacts(3, None), TASK, END, opening=None, timing=TIMING))
    assert_expired(decision.change, state)


@pytest.mark.parametrize(("attempts", "phase"), [(0, Phase.WINDOW_WAIT), (2, Phase.RETRY_WAIT)])
def test_on_job_a_copy_not_yet_due_waits_again_with_a_delayed_job(
    attempts: int, phase: Phase
) -> None:
    due = NOW_MS + 20 * 60_000  # beyond what the queue can delay, so the copy came early
    state = pending(attempts=attempts, not_before_ms=due, wake_ms=due + WATCHDOG_MS)
    decision = decided(on_job(state, job_at(state, due), TASK, NOW, opening=None, timing=TIMING))
    assert not decision.call
    assert decision.queue_at_ms == due
    change = decision.change
    assert change.step is Step.WAIT
    assert change.reason == "not due yet"
    assert change.expect_generation == 4
    assert change.after == replace(
        state, phase=phase, generation=5, wake_ms=due + WATCHDOG_MS, not_before_ms=due
    )


@pytest.mark.parametrize("not_before_ms", [None, NOW_MS - 60_000, NOW_MS])
def test_on_job_in_an_open_window_claims_for_a_provider_call(not_before_ms: int | None) -> None:
    state = pending(attempts=1, not_before_ms=not_before_ms, last_error="HTTP 503")
    decision = decided(
        on_job(state, job_at(state, not_before_ms), TASK, NOW, opening=None, timing=TIMING)
    )
    assert decision.call
    assert decision.queue_at_ms is None
    change = decision.change
    assert change.step is Step.CLAIM
    assert change.expect_generation == 4
    assert not change.outcome_only
    assert not change.status_changed
    until = NOW_MS + LEASE_MS
    assert change.after == replace(
        state,
        phase=Phase.CLAIMED,
        generation=5,
        claimed_until_ms=until,
        wake_ms=None,  # no index write: the claiming job comes back if its sender dies
        not_before_ms=None,
    )
    assert change.after.held_at(NOW_MS)
    assert not change.after.held_at(until)


def test_on_job_takes_over_a_lapsed_claim_with_a_new_claim() -> None:
    state = claimed(until_ms=NOW_MS - 1, generation=4)
    decision = decided(on_job(state, JobFacts(3, None), TASK, NOW, opening=None, timing=TIMING))
    assert decision.call
    assert decision.change.expect_generation == 4
    assert decision.change.after.generation == 5
    assert decision.change.after.claimed_until_ms == NOW_MS + LEASE_MS


@pytest.mark.parametrize("opening", [END, END + timedelta(hours=3)])
def test_on_job_sets_aside_a_message_whose_window_opens_after_the_end(opening: datetime) -> None:
    state = pending()
    decision = decided(on_job(state, job_at(state), TASK, NOW, opening=opening, timing=TIMING))
    assert not decision.call
    assert decision.queue_at_ms is None  # no job: only a rejudge or the sweep moves it
    change = decision.change
    assert change.step is Step.SET_ASIDE
    assert change.expect_generation == 4
    assert change.after == replace(
        state,
        phase=Phase.WINDOW_WAIT,
        generation=5,
        wake_ms=ms(opening),
        not_before_ms=ms(opening),
    )


@pytest.mark.parametrize("later", [timedelta(minutes=15, milliseconds=1), timedelta(hours=4)])
def test_on_job_parks_a_message_whose_window_opens_later_than_park_after(
    later: timedelta,
) -> None:
    state = pending()
    opening = NOW + later
    decision = decided(on_job(state, job_at(state), TASK, NOW, opening=opening, timing=TIMING))
    assert not decision.call
    assert decision.queue_at_ms is None  # the dispatcher wakes it wake_lead before
    change = decision.change
    assert change.step is Step.PARK
    assert change.after == replace(
        state,
        phase=Phase.WINDOW_WAIT,
        generation=5,
        wake_ms=ms(opening) - WAKE_LEAD_MS,
        not_before_ms=ms(opening),
    )


@pytest.mark.parametrize("later", [timedelta(milliseconds=1), timedelta(minutes=15)])
def test_on_job_waits_for_a_window_opening_soon_with_a_delayed_job(later: timedelta) -> None:
    state = pending(attempts=2)
    opening = NOW + later
    decision = decided(on_job(state, job_at(state), TASK, NOW, opening=opening, timing=TIMING))
    assert not decision.call
    assert decision.queue_at_ms == ms(opening)
    change = decision.change
    assert change.step is Step.WAIT
    assert change.reason == "outside send window"
    assert change.after == replace(
        state,
        phase=Phase.WINDOW_WAIT,
        generation=5,
        wake_ms=ms(opening) + WATCHDOG_MS,
        not_before_ms=ms(opening),
    )


# --- may_call ---------------------------------------------------------------------------


LEASE = timedelta(milliseconds=LEASE_MS)
LEASED = NOW_MS + LEASE_MS  # a claim taken at NOW
CALL = CONNECT + timedelta(seconds=10)  # connect and read timeouts


def check(task: TaskFacts, now: datetime, connect: timedelta = CONNECT) -> str | None:
    held = max(LEASED, ms(now) + LEASE_MS)
    return may_call(task, now, connect=connect, call=CALL, claimed_until_ms=held)


def test_may_call_refuses_a_deleted_task() -> None:
    assert check(DELETED, NOW) == "task deleted"


@pytest.mark.parametrize(
    "now",
    [END - CONNECT, END - CONNECT + timedelta(milliseconds=1), END, END + timedelta(hours=1)],
)
def test_may_call_refuses_a_call_that_could_not_reach_the_provider_before_the_end(
    now: datetime,
) -> None:
    assert check(TASK, now) == "the task's end has passed"


@pytest.mark.parametrize("now", [NOW, END - CONNECT - timedelta(milliseconds=1)])
def test_may_call_allows_a_call_that_reaches_the_provider_before_the_end(now: datetime) -> None:
    assert check(TASK, now) is None


def test_may_call_with_no_connect_allowance_is_refused_exactly_at_the_end() -> None:
    assert check(TASK, END, timedelta(0)) == "the task's end has passed"
    assert check(TASK, END - timedelta(milliseconds=1), timedelta(0)) is None


@pytest.mark.parametrize("spent", [LEASE - CALL, LEASE - CALL + timedelta(seconds=5), LEASE])
def test_may_call_refuses_a_call_that_could_outlast_its_claim(spent: timedelta) -> None:
    # The batch took ``spent`` since the claim: the call might still run when the lease
    # lapses and another copy takes over.
    verdict = may_call(TASK, NOW + spent, connect=CONNECT, call=CALL, claimed_until_ms=LEASED)
    assert verdict == "the claim could lapse during the call"
    fine = NOW + LEASE - CALL - timedelta(milliseconds=1)
    assert may_call(TASK, fine, connect=CONNECT, call=CALL, claimed_until_ms=LEASED) is None


# --- on_answer --------------------------------------------------------------------------

HELD = claimed(until_ms=NOW_MS + LEASE_MS, generation=5, attempts=1, last_error="HTTP 503")
DONE_AT = NOW + timedelta(seconds=2)


def answer(
    outcome: Outcome,
    detail: str = "HTTP 500",
    *,
    held: MessageState = HELD,
    delay_seconds: float = 30.0,
    done_at: datetime = DONE_AT,
) -> Decision:
    return on_answer(
        held,
        Answer(outcome, detail),
        task=TASK,
        done_at=done_at,
        policy=POLICY,
        delay_seconds=delay_seconds,
        timing=TIMING,
    )


def test_on_answer_sent_records_the_message_as_sent_whoever_holds_it() -> None:
    decision = answer(Outcome.SENT, "OK")
    assert not decision.call
    assert decision.queue_at_ms is None
    change = decision.change
    assert change.step is Step.SENT
    assert change.outcome_only  # the provider's verdict stands even after a takeover
    assert change.sent  # stamps sent_at
    assert change.status_changed
    assert change.after == replace(
        HELD,
        status=MessageStatus.SENT,
        phase=Phase.DONE,
        attempts=2,
        claimed_until_ms=None,
        wake_ms=None,
        not_before_ms=None,
    )


def test_on_answer_permanent_fails_the_message_with_its_error() -> None:
    decision = answer(Outcome.PERMANENT, "HTTP 400")
    assert decision.queue_at_ms is None
    change = decision.change
    assert change.step is Step.FAIL
    assert change.reason == "permanent error"
    assert change.outcome_only
    assert not change.sent
    assert change.after == replace(
        HELD,
        status=MessageStatus.FAILED,
        phase=Phase.DONE,
        attempts=2,
        claimed_until_ms=None,
        wake_ms=None,
        not_before_ms=None,
        last_error="HTTP 400",
    )


def test_on_answer_retryable_on_the_last_attempt_fails_out_of_attempts() -> None:
    held = replace(HELD, attempts=POLICY.max_attempts - 1)
    decision = answer(Outcome.RETRY, "HTTP 503", held=held)
    assert decision.queue_at_ms is None
    change = decision.change
    assert change.step is Step.FAIL
    assert change.reason == "out of attempts"
    assert change.outcome_only
    assert change.after.status is MessageStatus.FAILED
    assert change.after.phase is Phase.DONE
    assert change.after.attempts == POLICY.max_attempts
    assert change.after.last_error == "HTTP 503"
    assert change.after.claimed_until_ms is None
    assert change.after.wake_ms is None


def test_on_answer_retryable_releases_the_claim_and_queues_a_retry() -> None:
    # Regression: a failed send was never retried because its own claim still held.
    decision = answer(Outcome.RETRY, "HTTP 502", delay_seconds=30.0)
    retry_at = ms(DONE_AT) + 30_000
    assert not decision.call
    assert decision.queue_at_ms == retry_at
    change = decision.change
    assert change.step is Step.RETRY
    assert not change.outcome_only  # only the holder's own generation may schedule it
    assert change.expect_generation == HELD.generation
    assert not change.status_changed
    assert change.after == replace(
        HELD,
        phase=Phase.RETRY_WAIT,
        generation=HELD.generation + 1,
        attempts=2,
        claimed_until_ms=None,
        wake_ms=retry_at + WATCHDOG_MS,
        not_before_ms=retry_at,
        last_error="HTTP 502",
    )
    assert not change.after.held_at(NOW_MS)


def test_a_failed_send_is_retried_before_its_old_lease_would_have_lapsed() -> None:
    # Regression: the retry copy, due well inside the holder's lease, must be accepted and
    # claimed, not refused because the (released) claim still holds.
    job = JobFacts(4, None)
    state = pending(generation=4)
    claim = decided(on_job(state, job, TASK, NOW, opening=None, timing=TIMING))
    held = claim.change.after
    retry = answer(Outcome.RETRY, "HTTP 503", held=held, delay_seconds=1.0)
    assert retry.queue_at_ms is not None
    stored = retry.change.after
    retry_copy = JobFacts(stored.generation, retry.queue_at_ms)
    arrival = NOW + timedelta(seconds=5)
    assert held.claimed_until_ms is not None
    assert ms(arrival) < held.claimed_until_ms
    assert current_copy(stored, retry_copy, ms(arrival)) is None
    again = decided(on_job(stored, retry_copy, TASK, arrival, opening=None, timing=TIMING))
    assert again.call
    assert again.change.step is Step.CLAIM
    assert again.change.after.attempts == 1


@pytest.mark.parametrize("past_end", [timedelta(0), timedelta(minutes=5)])
def test_on_answer_sets_aside_a_retry_that_would_come_after_the_end(past_end: timedelta) -> None:
    done_at = END - timedelta(seconds=30)
    delay = 30 + past_end.total_seconds()
    decision = answer(Outcome.RETRY, "HTTP 429", done_at=done_at, delay_seconds=delay)
    retry_at = ms(END + past_end)
    assert decision.queue_at_ms is None  # no job: a later end brings it back
    change = decision.change
    assert change.step is Step.SET_ASIDE
    assert not change.outcome_only
    assert change.after == replace(
        HELD,
        phase=Phase.RETRY_WAIT,
        generation=HELD.generation + 1,
        attempts=2,
        claimed_until_ms=None,
        wake_ms=retry_at,
        not_before_ms=retry_at,
        last_error="HTTP 429",
    )


# --- wake -------------------------------------------------------------------------------


@pytest.mark.parametrize("rejudge", [False, True])
@pytest.mark.parametrize("status", FINAL)
def test_wake_refuses_a_final_message(status: MessageStatus, rejudge: bool) -> None:
    verdict = wake(final(status), NOW_MS, end=END, rejudge=rejudge, timing=TIMING)
    assert verdict == Refusal(f"message already {status.value}")


@pytest.mark.parametrize("rejudge", [False, True])
def test_wake_leaves_a_message_held_by_a_live_sender_to_it(rejudge: bool) -> None:
    state = claimed(until_ms=NOW_MS + 1)
    verdict = wake(state, NOW_MS, end=END, rejudge=rejudge, timing=TIMING)
    assert verdict == Refusal("a sender holds it")


@pytest.mark.parametrize("rejudge", [False, True])
@pytest.mark.parametrize("lapsed_by_ms", [0, 30_000])
def test_wake_takes_back_an_abandoned_claim(rejudge: bool, lapsed_by_ms: int) -> None:
    # Claims written before issue 17 carry a wake time (the lease's end): still honoured.
    until = NOW_MS - lapsed_by_ms
    state = claimed(until_ms=until, generation=4, attempts=1, wake_ms=until)
    decision = decided(wake(state, NOW_MS, end=END, rejudge=rejudge, timing=TIMING))
    assert decision.queue_at_ms == NOW_MS
    assert not decision.call
    change = decision.change
    assert change.step is Step.WAKE
    assert change.expect_generation == 4
    assert change.after == replace(
        state,
        phase=Phase.QUEUED,
        generation=5,
        claimed_until_ms=None,
        wake_ms=NOW_MS + WATCHDOG_MS,
        not_before_ms=None,
    )


def test_wake_keeps_a_retry_backoff_on_a_rejudge() -> None:
    due = NOW_MS + 45_000
    state = pending(Phase.RETRY_WAIT, attempts=1, not_before_ms=due, wake_ms=due + WATCHDOG_MS)
    decision = decided(wake(state, NOW_MS, end=END, rejudge=True, timing=TIMING))
    assert decision.queue_at_ms == due
    assert decision.change.after.not_before_ms == due
    assert decision.change.after.wake_ms == due + WATCHDOG_MS


def test_a_retry_whose_job_was_lost_is_queued_at_once() -> None:
    due = NOW_MS - WATCHDOG_MS  # its job should have come a watchdog ago
    state = pending(Phase.RETRY_WAIT, attempts=1, not_before_ms=due, wake_ms=NOW_MS)
    decision = decided(wake(state, NOW_MS, end=END, rejudge=False, timing=TIMING))
    assert decision.queue_at_ms == due  # no delay: due already
    assert decision.change.after.wake_ms == NOW_MS + WATCHDOG_MS


@pytest.mark.parametrize("ahead_ms", [1, WATCHDOG_MS])
def test_a_plain_wake_before_the_wake_time_is_refused(ahead_ms: int) -> None:
    # The dispatcher only wakes what is due: a job still on its way is left alone.
    state = pending(Phase.RETRY_WAIT, attempts=1, not_before_ms=NOW_MS, wake_ms=NOW_MS + ahead_ms)
    verdict = wake(state, NOW_MS, end=END, rejudge=False, timing=TIMING)
    assert verdict == Refusal("not due to be woken yet")


def test_wake_keeps_a_window_opening_on_a_plain_wake() -> None:
    opening = NOW_MS + WAKE_LEAD_MS  # a parked message woken wake_lead before its opening
    state = pending(Phase.WINDOW_WAIT, not_before_ms=opening, wake_ms=NOW_MS)
    decision = decided(wake(state, NOW_MS, end=END, rejudge=False, timing=TIMING))
    assert decision.queue_at_ms == opening
    assert decision.change.after.not_before_ms == opening
    assert decision.change.after.wake_ms == opening + WATCHDOG_MS
    assert decision.change.reason == "woken"


def test_a_watchdog_never_falls_after_the_end_for_a_job_due_before_it() -> None:
    due = ms(END) - 10_000
    assert watchdog(due, END, TIMING) == ms(END) - 1
    assert watchdog(ms(END) + 5, END, TIMING) == ms(END) + 5  # due after: the sweep's
    assert watchdog(NOW_MS, END, TIMING) == NOW_MS + WATCHDOG_MS


def test_wake_on_a_rejudge_judges_a_window_wait_afresh() -> None:
    opening = NOW_MS + 3 * 3_600_000
    state = pending(Phase.WINDOW_WAIT, not_before_ms=opening, wake_ms=opening)
    decision = decided(wake(state, NOW_MS, end=END, rejudge=True, timing=TIMING))
    assert decision.queue_at_ms == NOW_MS
    assert decision.change.after.not_before_ms is None
    assert decision.change.after.wake_ms == NOW_MS + WATCHDOG_MS
    assert decision.change.reason == "woken after a change of window or end"


WAKEABLE = [
    pending(Phase.QUEUED, wake_ms=NOW_MS - 1),
    pending(Phase.QUEUED, not_before_ms=NOW_MS + 30_000, wake_ms=NOW_MS + 90_000),
    claimed(until_ms=NOW_MS - 1),
    claimed(until_ms=NOW_MS),
    pending(Phase.RETRY_WAIT, attempts=2, not_before_ms=NOW_MS - 90_000, wake_ms=NOW_MS - 30_000),
    pending(Phase.RETRY_WAIT, attempts=2, not_before_ms=NOW_MS + 30_000, wake_ms=NOW_MS + 30_000),
    pending(Phase.RETRY_WAIT, attempts=1, not_before_ms=ms(END), wake_ms=ms(END)),
    pending(Phase.WINDOW_WAIT, not_before_ms=NOW_MS + 40_000, wake_ms=NOW_MS + 40_000),
    pending(Phase.WINDOW_WAIT, not_before_ms=NOW_MS - 1, wake_ms=NOW_MS + 59_999),
    pending(Phase.WINDOW_WAIT, not_before_ms=ms(END), wake_ms=ms(END)),
]


@pytest.mark.parametrize("state", [s for s in WAKEABLE if s.phase is Phase.QUEUED])
def test_a_rejudge_leaves_a_queued_message_to_its_job(state: MessageState) -> None:
    # Its job is judged by the task as it is when it arrives: waking it again would
    # only queue a second copy.
    refusal = wake(state, NOW_MS, end=END, rejudge=True, timing=TIMING)
    assert refusal == Refusal("its queued job is judged by the new window and end anyway")


@pytest.mark.parametrize(
    ("state", "rejudge"),
    [(s, False) for s in WAKEABLE if s.wake_ms is not None and s.wake_ms <= NOW_MS]
    + [(s, True) for s in WAKEABLE if s.phase is not Phase.QUEUED],
)
def test_every_wake_queues_a_new_current_copy_and_keeps_a_watchdog(
    state: MessageState, rejudge: bool
) -> None:
    decision = decided(wake(state, NOW_MS, end=END, rejudge=rejudge, timing=TIMING))
    after = decision.change.after
    assert decision.change.expect_generation == state.generation
    assert after.generation == state.generation + 1
    assert after.phase is Phase.QUEUED
    assert after.pending
    assert after.claimed_until_ms is None
    assert after.attempts == state.attempts
    assert decision.queue_at_ms is not None
    # A watchdog after the later of now and the job's due time, before the end if it can.
    assert after.wake_ms == watchdog(max(decision.queue_at_ms, NOW_MS), END, TIMING)
    # The new copy is the current one.
    assert current_copy(after, JobFacts(after.generation, after.not_before_ms), NOW_MS) is None


# --- sweep ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", FINAL)
def test_sweep_refuses_a_final_message(status: MessageStatus) -> None:
    assert sweep(final(status), ms(END)) == Refusal(f"message already {status.value}")


def test_sweep_waits_for_a_provider_call_in_flight() -> None:
    verdict = sweep(claimed(until_ms=ms(END) + 1), ms(END))
    assert isinstance(verdict, Refusal)
    assert "in flight" in verdict.reason


@pytest.mark.parametrize("until_ms", [ms(END), ms(END) - 30_000])
def test_sweep_expires_a_claim_whose_lease_has_lapsed(until_ms: int) -> None:
    state = claimed(until_ms=until_ms)
    assert_expired(changed(sweep(state, ms(END))), state)


@pytest.mark.parametrize(
    "state",
    [
        created(7),
        pending(Phase.QUEUED, wake_ms=ms(END) + 60_000, not_before_ms=ms(END)),
        pending(Phase.RETRY_WAIT, attempts=2, wake_ms=ms(END), not_before_ms=ms(END)),
        pending(Phase.WINDOW_WAIT, wake_ms=ms(END) + 1, not_before_ms=ms(END) + 1),
    ],
)
def test_sweep_expires_a_queued_or_waiting_message(state: MessageState) -> None:
    assert_expired(changed(sweep(state, ms(END))), state)


# --- property: random histories of one message ------------------------------------------

SIM_START = NOW
SIM_END = END
QUEUE_MAX_DELAY_MS = 15 * 60_000


@dataclass
class SimJob:
    generation: int
    not_before_ms: int | None
    deliver_ms: int  # SQS caps a delay at 15 minutes
    returned: bool = False  # handed out again by SQS (or requeued for a lease): not lost


@dataclass
class World:
    """One message, its job copies in the queue, and the calls in flight; storage writes
    a change only when the message is still pending at the generation expected."""

    rng: random.Random
    now: datetime = SIM_START
    state: MessageState = field(default_factory=lambda: created(7))
    jobs: list[SimJob] = field(default_factory=lambda: [SimJob(0, None, ms(SIM_START))])
    calls: list[tuple[MessageState, SimJob]] = field(default_factory=list)
    history: list[MessageState] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.history.append(self.state)

    # storage ---------------------------------------------------------------------------

    def write(self, change: Change) -> bool:
        stored = self.state
        if not stored.pending:
            return False
        if not change.outcome_only and stored.generation != change.expect_generation:
            return False
        after = change.after
        if after.pending:
            # Every write that leaves it pending moves the generation on.
            assert after.generation > stored.generation, (stored, change)
        else:
            # Only a provider's verdict may land on a newer generation than it read, and
            # it ends the message: nothing acts on a final message's generation.
            assert after.generation >= stored.generation or change.outcome_only, change
        self.state = after
        self.history.append(after)
        self.check()
        return True

    def check(self) -> None:
        state = self.state
        if not state.pending:
            return
        # A way forward: a job copy in the queue, or a time the dispatcher looks at it;
        # for a claim, its holder, whose job comes back if it dies (an older copy).
        if state.phase is Phase.CLAIMED:
            assert state.claimed_until_ms is not None
            assert any(job.generation < state.generation for job in self.in_flight()), state
            return
        assert state.phase is Phase.QUEUED or state.wake_ms is not None, state
        if state.wake_ms is None:
            assert any(job.generation == state.generation for job in self.jobs), state

    def in_flight(self) -> list[SimJob]:
        """Queued copies and those held by a sender's call (SQS keeps them till deleted)."""
        return self.jobs + [job for _, job in self.calls]

    def read(self) -> MessageState:
        """What a sender or the dispatcher read: now and then a state since overwritten."""
        if self.rng.random() < 0.2:
            return self.rng.choice(self.history)
        return self.state

    def queue(self, generation: int, not_before_ms: int | None, at_ms: int) -> None:
        now_ms = ms(self.now)
        deliver = min(max(at_ms, now_ms), now_ms + QUEUE_MAX_DELAY_MS)
        self.jobs.append(SimJob(generation, not_before_ms, deliver))

    def apply(self, decision: Decision, job: SimJob | None = None) -> None:
        if decision.call:
            assert job is not None
            self.calls.append((decision.change.after, job))  # its job is held meanwhile
        if not self.write(decision.change):
            if decision.call:
                self.calls.pop()
            return
        after = decision.change.after
        if decision.queue_at_ms is not None:
            self.queue(after.generation, decision.queue_at_ms, decision.queue_at_ms)

    # events ----------------------------------------------------------------------------

    def deliver(self, job: SimJob, opening: datetime | None, *, fresh: bool = False) -> None:
        self.jobs.remove(job)
        state = self.state if fresh else self.read()
        written = len(self.history)
        self._judge(job, state, opening)
        if state is not self.state and len(self.history) == written:
            # Read before a write that came after: in a real race that writer carries the
            # message on; nothing ran alongside here, so the copy sees the state as it is.
            self._judge(job, self.state, opening)

    def _judge(self, job: SimJob, state: MessageState, opening: datetime | None) -> None:
        facts = JobFacts(job.generation, job.not_before_ms)
        if current_copy(state, facts, ms(self.now)) is not None:
            if state.held_at(ms(self.now)) and state.claimed_until_ms is not None:
                # The sender queues the copy again for the lease's end (the claim's way
                # forward if its holder dies: a claim has no wake time).
                self.jobs.append(
                    replace(job, deliver_ms=state.claimed_until_ms + 1000, returned=True)
                )
            return  # dropped
        verdict = on_job(state, facts, TASK, self.now, opening=opening, timing=TIMING)
        assert isinstance(verdict, Decision)  # the task is never deleted here
        self.apply(verdict, job)

    def answer(self, index: int, outcome: Outcome) -> None:
        held, _ = self.calls.pop(index)
        if check(TASK, self.now) is not None:
            self.write(expire(held, "the task's end has passed"))
            return
        delay = POLICY.delay_seconds(held.attempts + 1, self.rng)
        self.apply(
            on_answer(
                held,
                Answer(outcome, f"{outcome.value}"),
                task=TASK,
                done_at=self.now,
                policy=POLICY,
                delay_seconds=delay,
                timing=TIMING,
            )
        )

    def die(self, index: int, *, comes_back_after: timedelta) -> None:
        """The sender dies holding the claim; SQS hands its copy out again after the
        visibility timeout (in AWS longer than the lease; here either way)."""
        _, job = self.calls.pop(index)
        at = ms(self.now + comes_back_after)
        self.jobs.append(replace(job, deliver_ms=at, returned=True))

    def dispatch(self, *, rejudge: bool, fresh: bool = False) -> None:
        state = self.state if fresh else self.read()
        now_ms = ms(self.now)
        horizon = min(now_ms, ms(SIM_END) - 1)
        if not rejudge and (state.wake_ms is None or state.wake_ms > horizon):
            return
        verdict = wake(state, now_ms, end=SIM_END, rejudge=rejudge, timing=TIMING)
        if isinstance(verdict, Decision) and self.write(verdict.change):
            after = verdict.change.after
            assert verdict.queue_at_ms is not None
            self.queue(after.generation, after.not_before_ms, verdict.queue_at_ms)

    def sweep_after_the_end(self) -> None:
        if self.now >= SIM_END:
            verdict = sweep(self.read(), ms(self.now))
            if isinstance(verdict, Change):
                self.write(verdict)

    def due_jobs(self) -> list[SimJob]:
        return [job for job in self.jobs if job.deliver_ms <= ms(self.now)]


OPENINGS: list[timedelta | None] = [
    None,
    None,
    timedelta(minutes=5),
    timedelta(minutes=40),
    timedelta(hours=8),  # after the end: set aside
]
TICKS = [timedelta(seconds=1), timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10)]


def random_history(world: World, events: int) -> None:
    """Anything that may happen, in any order, while the end is still hours away."""
    rng = world.rng
    for _ in range(events):
        event = rng.choice(["tick", "deliver", "deliver", "answer", "die", "wake", "lose"])
        if event == "tick":
            world.now = min(world.now + rng.choice(TICKS), SIM_END - timedelta(hours=1))
        elif event == "deliver" and world.jobs:
            later = rng.choice(OPENINGS)
            opening = None if later is None else world.now + later
            # A copy may come early (SQS caps delays) or late, or twice.
            job = rng.choice(world.jobs)
            if rng.random() < 0.2:
                world.jobs.append(replace(job))
            world.deliver(job, opening)
        elif event == "answer" and world.calls:
            outcome = rng.choice([Outcome.SENT, Outcome.RETRY, Outcome.RETRY, Outcome.PERMANENT])
            world.answer(rng.randrange(len(world.calls)), outcome)
        elif event == "die" and world.calls:
            visibility = timedelta(seconds=rng.choice([10, 180]))
            world.die(rng.randrange(len(world.calls)), comes_back_after=visibility)
        elif event == "wake":
            world.dispatch(rejudge=rng.random() < 0.2)
        elif event == "lose":
            # Any copy but the first (the fan-out checkpoint queues that one again).
            lost = [job for job in world.jobs if job.generation > 0 and not job.returned]
            if lost:
                world.jobs.remove(rng.choice(lost))
        world.check()


def can_still_be_sent(state: MessageState) -> bool:
    """Pending and not set aside past the end (nor due too close to it)."""
    limit = ms(SIM_END) - 10 * 60_000
    return state.pending and (state.not_before_ms is None or state.not_before_ms < limit)


def run_to_the_end(world: World) -> None:
    """From here on the window is open, every call succeeds and nothing is lost."""
    while world.now <= SIM_END + 2 * TIMING.lease:
        for job in sorted(world.due_jobs(), key=lambda job: -job.generation):
            world.deliver(job, None, fresh=True)
        while world.calls:
            world.answer(0, Outcome.SENT)
        world.dispatch(rejudge=False, fresh=True)
        if world.now >= SIM_END:
            world.sweep_after_the_end()
        world.check()
        if not world.state.pending:
            return
        world.now += timedelta(seconds=30)


@pytest.mark.parametrize("seed", range(200))
def test_random_histories_move_forward_and_never_back(seed: int) -> None:
    world = World(random.Random(seed))
    random_history(world, events=world.rng.randrange(5, 60))

    before_end = world.state
    generations = [state.generation for state in world.history if state.pending]
    assert generations == sorted(generations)

    run_to_the_end(world)
    assert not world.state.pending, world.state
    if can_still_be_sent(before_end):
        assert world.state.status is MessageStatus.SENT, (before_end, world.state)
    generations = [state.generation for state in world.history if state.pending]
    assert generations == sorted(generations)
