"""The sender under rate limits (issue 18), on the fakes with a virtual clock: calls start
at their slots, 1/rate apart; claims the limits leave without a slot wait in the sender,
then are given back with no attempt spent; a task with no cap of its own but a global
one is capped too; the release is a transition of its own (``lifecycle.release``)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from chalicelib.domain import lifecycle
from chalicelib.domain.lifecycle import MessageState, Phase, Step
from chalicelib.domain.messages import MessageStatus, RetryPolicy
from chalicelib.domain.ratelimit import task_key, to_us
from chalicelib.ports import Recipient
from chalicelib.services.sending import RATE_WAIT, Sender
from tests.fakes import (
    TIMING,
    FakeMessages,
    FakeProvider,
    FakeQueue,
    FakeRateLimiter,
    FakeTasks,
    World,
    job_records,
    make_task,
)

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
END = NOW + timedelta(hours=1)


class Rig:
    def __init__(self, clients: int, *, task_rate: int | None, all_rate: int | None) -> None:
        self.world = World(NOW, random.Random(5))
        self.tasks = FakeTasks(self.world)
        self.tasks.add(replace(make_task(1, start=NOW, end=END), rate_limit=task_rate))
        self.messages = FakeMessages(self.world, self.tasks)
        self.recipients = [Recipient(n, f"790000000{n:02d}", "UTC") for n in range(1, clients + 1)]
        self.messages.create(1, self.recipients, NOW)
        self.queue = FakeQueue(self.world)
        self.provider = FakeProvider(self.world, {"ok": 1.0}, connect_timeout=0.0)
        self.limiter = FakeRateLimiter(self.world)
        self.starts: list[datetime] = []
        send = self.provider.send

        def timed(*args: object, **kwargs: object) -> object:
            self.starts.append(self.world.now)
            return send(*args, **kwargs)  # type: ignore[arg-type]

        self.provider.send = timed  # type: ignore[method-assign]
        self.sender = Sender(
            self.world.clock,
            messages=self.messages,
            tasks=self.tasks,
            queue=self.queue,
            provider=self.provider,
            policy=RetryPolicy(max_attempts=3, base_seconds=1, cap_seconds=5),
            timing=TIMING,
            parallel_calls=1,
            limiter=self.limiter,
            send_rate_limit=all_rate,
            sleep=self.world.sleep,
        )

    def deliver(self) -> dict[str, int]:
        return self.sender.handle(job_records(1, self.recipients)).outcomes


def test_calls_start_at_their_slots_one_over_the_rate_apart() -> None:
    rig = Rig(10, task_rate=4, all_rate=None)
    assert rig.deliver() == {"sent": 10}
    gaps = [(b - a).total_seconds() for a, b in zip(rig.starts, rig.starts[1:], strict=False)]
    assert min(gaps) >= 0.25 - 1e-6  # 4/s
    assert (rig.starts[-1] - rig.starts[0]).total_seconds() < 9 * 0.25 + 0.5


def test_the_global_cap_holds_a_task_without_one_of_its_own() -> None:
    rig = Rig(6, task_rate=None, all_rate=2)
    assert rig.deliver()["sent"] == 6
    gaps = [(b - a).total_seconds() for a, b in zip(rig.starts, rig.starts[1:], strict=False)]
    assert min(gaps) >= 0.5 - 1e-6


def test_no_cap_calls_at_once_and_asks_no_limiter() -> None:
    rig = Rig(5, task_rate=None, all_rate=None)
    assert rig.deliver()["sent"] == 5
    assert rig.limiter.reservations == 0


def test_claims_left_without_a_slot_are_given_back_with_no_attempt_spent() -> None:
    # 1/s and 10 messages; other senders hold the next 8 s of slots: within RATE_WAIT
    # (10 s) only the slots after those come, and the rest go back.
    rig = Rig(10, task_rate=1, all_rate=None)
    rig.limiter.tats[task_key(1)] = to_us(NOW + timedelta(seconds=8))
    outcomes = rig.deliver()
    sent = outcomes.get("sent", 0)
    assert 1 <= sent <= RATE_WAIT.total_seconds() - 7 + 1
    assert outcomes["throttled"] == 10 - sent
    given_back = [m for m in rig.messages.items.values() if m.state.status is MessageStatus.PENDING]
    assert len(given_back) == 10 - sent
    for message in given_back:
        assert message.state.phase is Phase.QUEUED
        assert message.state.attempts == 0  # no attempt spent
        assert message.state.wake_ms is not None  # a way forward if its job is lost
    # Each goes back to the queue delayed, at its new generation.
    queued = {job.client_id: job for job in rig.queue.bodies()}
    for message in given_back:
        assert queued[message.recipient.client_id].generation == message.state.generation


def test_release_is_a_queued_copy_at_a_new_generation_with_a_watchdog() -> None:
    held = MessageState(7, MessageStatus.PENDING, Phase.CLAIMED, 3, 1, claimed_until_ms=10**13)
    due = lifecycle.ms(NOW + timedelta(seconds=4))
    decision = lifecycle.release(held, due, end=END, timing=TIMING)
    after = decision.change.after
    assert decision.change.step is Step.THROTTLE and not decision.call
    assert decision.queue_at_ms == due
    assert (after.phase, after.generation, after.attempts) == (Phase.QUEUED, 4, 1)
    assert after.claimed_until_ms is None and after.not_before_ms is None
    assert after.wake_ms == lifecycle.watchdog(due, END, TIMING)
    assert decision.change.expect_generation == 3
