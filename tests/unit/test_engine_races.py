"""Races of the campaign controls and the rate limits with a sender, found by a review
of issue 18's engine (each test failed before its fix), on the fakes."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from chalicelib.domain.messages import RetryPolicy
from chalicelib.domain.provider import Outcome, ProviderResult
from chalicelib.domain.ratelimit import task_key, to_us
from chalicelib.domain.tasks import Fanout, TaskStatus
from chalicelib.ports import Recipient
from chalicelib.queue import SendJob
from chalicelib.services.dispatch import Dispatcher
from chalicelib.services.sending import RATE_WAIT, Record, Sender
from chalicelib.settings import Settings
from tests.fakes import (
    TIMING,
    FakeAudience,
    FakeFanoutQueue,
    FakeMessages,
    FakeProvider,
    FakeQueue,
    FakeRateLimiter,
    FakeSegments,
    FakeStopList,
    FakeTasks,
    ProviderCall,
    World,
    job_records,
    make_task,
)

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
END = NOW + timedelta(seconds=600)
PHONE = "79000000007"
GRACE = timedelta(seconds=0.5 + 2.0 + 0.25)  # what pause and delete wait before answering
# The send function's timeout (.chalice/config.json).
SEND_TIMEOUT = timedelta(seconds=30)


def rig(**task_changes: object) -> tuple:  # type: ignore[type-arg]
    world = World(NOW, random.Random(1))
    tasks = FakeTasks(world)
    task = replace(
        make_task(1, start=NOW - timedelta(seconds=5), end=END),
        status=TaskStatus.RUNNING,
        fanout=Fanout(done=True),
        **task_changes,
    )
    tasks.add(task)
    messages = FakeMessages(world, tasks)
    messages.create(1, [Recipient(7, PHONE, "UTC")], NOW)
    queue = FakeQueue(world)
    provider = FakeProvider(world, {"ok": 1.0}, connect_timeout=2.0)
    stops = FakeStopList(world)
    dispatcher = Dispatcher(
        Settings.from_env({}),
        world.clock,
        tasks=tasks,
        messages=messages,
        audience=FakeAudience(world, []),
        queue=queue,
        segments=FakeSegments(world),
        fanout_queue=FakeFanoutQueue(world),
        timing=TIMING,
        sleep=world.sleep,
        monotonic=world.monotonic,
    )
    return world, tasks, messages, queue, provider, stops, dispatcher


def sender_for(world, tasks, messages, queue, provider, stops, **kw):
    return Sender(
        world.clock,
        messages=messages,
        tasks=tasks,
        queue=queue,
        provider=provider,
        policy=RetryPolicy(max_attempts=3, base_seconds=1, cap_seconds=5),
        timing=TIMING,
        parallel_calls=1,
        stops=stops,
        sleep=world.sleep,
        **kw,
    )


def job():
    return SendJob(message_id=10_000_000_007, task_id=1, client_id=7, phone=PHONE, utc="UTC")


def test_a_hold_written_after_a_resume_is_sent_once_the_task_runs() -> None:
    """A sender read the task paused; before it wrote the hold, the resume's first page
    woke what it found and cleared the rejudge flag. The hold must still have a wake
    time the dispatcher reaches once the task runs (it had the end: sent never)."""
    world, tasks, messages, queue, provider, stops, dispatcher = rig()
    tasks.control(1, world.now, TaskStatus.PAUSED)
    sender = sender_for(world, tasks, messages, queue, provider, stops)
    fired: list[int] = []

    def hook(name: str) -> None:
        if name == "messages.apply" and not fired:
            fired.append(1)
            tasks.control(1, world.now, TaskStatus.RUNNING)
            dispatcher.start_task(1)

    world.on_io = hook
    assert sender.handle([Record("r1", job().to_body())]).outcomes == {"held": 1}
    world.on_io = None
    assert not tasks.items[1].rejudge
    for _ in range(3):  # a few scheduled runs and deliveries
        world.advance(60)
        dispatcher.dispatch_due(30)
        for key, queued in list(queue.jobs.items()):
            sender.handle([Record(str(key), queued.body)])
            queue.delete(key)
    assert messages.items[(1, 7)].state.status.value == "sent"
    assert len(provider.calls) == 1


class SlowStops(FakeStopList):
    """The second stop-list read (the one right before a call) takes ``seconds``, and
    ``during`` happens meanwhile."""

    def __init__(self, world: World, seconds: float, during: object) -> None:
        super().__init__(world)
        self.world = world
        self.seconds, self.during, self.reads = seconds, during, 0

    def stopped(self, phones: object) -> set[str]:
        self.reads += 1
        if self.reads == 2:
            if callable(self.during):
                self.during()
            self.world.advance(self.seconds)
        return super().stopped(phones)  # type: ignore[arg-type]


class SlowToken(FakeProvider):
    def warm(self) -> str:
        self.world.advance(0.6)  # the batch's stop-list read is now older than 0.5 s
        return "token"


def test_a_slow_stop_list_read_comes_before_the_last_check_not_after() -> None:
    world, tasks, messages, queue, _, _, _ = rig()
    answered: dict[str, datetime] = {}

    def pause() -> None:
        tasks.control(1, world.now, TaskStatus.PAUSED)
        answered["at"] = world.now + GRACE

    provider = SlowToken(world, {"ok": 1.0}, connect_timeout=2.0)
    sender = sender_for(world, tasks, messages, queue, provider, SlowStops(world, 3.0, pause))
    sender.handle([Record("r1", job().to_body())])
    assert [c for c in provider.calls if c.arrived > answered["at"]] == []


def test_a_slow_stop_list_read_never_carries_a_call_past_the_end() -> None:
    world, tasks, messages, queue, _, _, _ = rig()
    tasks.items[1] = replace(tasks.items[1], end=NOW + timedelta(seconds=4))
    provider = SlowToken(world, {"ok": 1.0}, connect_timeout=2.0)
    sender = sender_for(world, tasks, messages, queue, provider, SlowStops(world, 3.5, None))
    sender.handle([Record("r1", job().to_body())])
    assert [c for c in provider.calls if c.arrived >= tasks.items[1].end] == []


def test_waiting_for_rate_slots_ends_inside_the_send_functions_timeout() -> None:
    world, tasks, messages, queue, _, stops, _ = rig(rate_limit=4)
    recipients = [Recipient(n, f"790000000{n:02d}", "UTC") for n in range(10, 20)]
    messages.create(1, recipients, NOW)
    t0 = world.now

    class Hanging(FakeProvider):
        def send(
            self, message_id: int, phone: str, text: str, attempt: int = 1, *, token: str = ""
        ) -> ProviderResult:
            self.calls.append(ProviderCall(message_id, world.now, True, phone))
            world.advance(12.0)  # connect 2 s + read 10 s: a hang
            return ProviderResult(Outcome.RETRY, None, "timeout")

    provider = Hanging(world, {"ok": 1.0}, connect_timeout=2.0, read_timeout=10.0)
    limiter = FakeRateLimiter(world)
    limiter.tats[task_key(1)] = to_us(t0 + RATE_WAIT - timedelta(seconds=0.2))
    sender = sender_for(world, tasks, messages, queue, provider, stops, limiter=limiter)
    records = job_records(1, recipients)
    outcomes = sender.handle(records).outcomes
    assert world.now - t0 < SEND_TIMEOUT, outcomes
    assert outcomes.get("throttled", 0) >= 8  # given back, not left to lapse
