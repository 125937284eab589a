"""The sender's last check before a provider call (SPEC rules 4 and 8), on the fakes:
made after the slow token read, with a task read at most the check age before, and
counting the connect time in."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from chalicelib.domain.lifecycle import Phase, ms
from chalicelib.domain.messages import RetryPolicy
from chalicelib.domain.tasks import TaskStatus
from chalicelib.ports import Recipient
from chalicelib.queue import SendJob
from chalicelib.services.sending import Record, Sender
from tests.fakes import (
    TIMING,
    FakeMessages,
    FakeProvider,
    FakeQueue,
    FakeStopList,
    FakeTasks,
    World,
    make_task,
)

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


class SlowToken(FakeProvider):
    """The token read takes ``seconds``, and something may happen meanwhile."""

    def __init__(self, world: World, seconds: float, meanwhile: object = None) -> None:
        super().__init__(world, {"ok": 1.0}, connect_timeout=2.0)
        self.seconds = seconds
        self.meanwhile = meanwhile

    def warm(self) -> str:
        self.world.advance(self.seconds)
        if callable(self.meanwhile):
            self.meanwhile()
        return "token"


def setup(
    end_in: float,
    provider_seconds: float,
    meanwhile: object = None,
    *,
    world: World | None = None,
    stops: FakeStopList | None = None,
) -> tuple[World, FakeTasks, FakeMessages, SlowToken, Sender]:
    world = world or World(NOW, random.Random(3))
    tasks = FakeTasks(world)
    tasks.add(make_task(1, start=NOW, end=NOW + timedelta(seconds=end_in)))
    messages = FakeMessages(world, tasks)
    messages.create(1, [Recipient(7, "79000000007", "UTC")], NOW)
    provider = SlowToken(world, provider_seconds, meanwhile)
    sender = Sender(
        world.clock,
        messages=messages,
        tasks=tasks,
        queue=FakeQueue(world),
        provider=provider,
        policy=RetryPolicy(max_attempts=3, base_seconds=1, cap_seconds=5),
        timing=TIMING,
        parallel_calls=1,
        stops=stops,
    )
    return world, tasks, messages, provider, sender


def deliver(sender: Sender) -> dict[str, int]:
    job = SendJob(message_id=10_000_000_007, task_id=1, client_id=7, phone="79000000007", utc="UTC")
    return sender.handle([Record("r1", job.to_body())]).outcomes


def test_a_slow_token_read_that_ends_past_the_end_calls_nothing() -> None:
    _, _, messages, provider, sender = setup(end_in=5, provider_seconds=6)
    assert deliver(sender) == {"expired": 1}
    assert provider.calls == []
    assert messages.items[(1, 7)].state.status.value == "expired"


def test_a_call_that_could_reach_the_provider_only_after_the_end_is_not_made() -> None:
    # 1 s before the end, with a 2 s connect timeout: the request might arrive late.
    _, _, _, provider, sender = setup(end_in=5, provider_seconds=4)
    assert deliver(sender) == {"expired": 1}
    assert provider.calls == []


def test_a_delete_during_the_token_read_stops_the_call() -> None:
    world = World(NOW, random.Random(3))
    holder: dict[str, FakeTasks] = {}
    _, tasks, messages, provider, sender = setup(
        end_in=600, provider_seconds=1.0, meanwhile=lambda: holder["tasks"].delete(1, world.now)
    )
    holder["tasks"] = tasks
    assert deliver(sender) == {"dropped": 1}
    assert provider.calls == []
    assert messages.items[(1, 7)].state.status.value == "pending"


def test_a_fresh_task_read_is_trusted_and_the_call_is_made() -> None:
    _, _, messages, provider, sender = setup(end_in=600, provider_seconds=0.1)
    assert deliver(sender) == {"sent": 1}
    assert [call.msg_id for call in provider.calls] == [10_000_000_007]
    assert messages.items[(1, 7)].state.status.value == "sent"


# --- campaign controls (issue 18): what changes during the token read -------------------

PHONE = "79000000007"


def test_a_pause_during_the_token_read_holds_the_message_without_a_call() -> None:
    holder: dict[str, FakeTasks] = {}
    world, tasks, messages, provider, sender = setup(
        end_in=600,
        provider_seconds=1.0,
        meanwhile=lambda: holder["tasks"].control(1, world.now, TaskStatus.PAUSED),
    )
    holder["tasks"] = tasks
    assert deliver(sender) == {"held": 1}
    assert provider.calls == []
    state = messages.items[(1, 7)].state
    assert state.status.value == "pending"
    assert state.phase is Phase.WINDOW_WAIT
    # A watchdog away: the dispatcher leaves a paused task alone, and wakes it once it runs.
    assert state.wake_ms is not None
    assert ms(NOW) < state.wake_ms < ms(NOW + timedelta(seconds=600))


def test_a_cancel_during_the_token_read_cancels_the_message_without_a_call() -> None:
    holder: dict[str, FakeTasks] = {}
    world, tasks, messages, provider, sender = setup(
        end_in=600,
        provider_seconds=1.0,
        meanwhile=lambda: holder["tasks"].control(1, world.now, TaskStatus.CANCELLED),
    )
    holder["tasks"] = tasks
    assert deliver(sender) == {"cancelled": 1}
    assert provider.calls == []
    assert messages.items[(1, 7)].state.status.value == "cancelled"


def test_a_phone_stopped_during_the_token_read_is_suppressed_without_a_call() -> None:
    # The batch read the stop list before the token; by the call that read is older than
    # the check age (0.5 s), so it is read again.
    world = World(NOW, random.Random(3))
    stops = FakeStopList(world)
    _, _, messages, provider, sender = setup(
        end_in=600,
        provider_seconds=1.0,
        meanwhile=lambda: stops.stop(PHONE),
        world=world,
        stops=stops,
    )
    assert deliver(sender) == {"suppressed": 1}
    assert provider.calls == []
    assert messages.items[(1, 7)].state.status.value == "suppressed"


def test_a_phone_stopped_before_the_batch_is_suppressed_without_a_token_read() -> None:
    world = World(NOW, random.Random(3))
    stops = FakeStopList(world)
    stops.stop(PHONE)
    _, _, messages, provider, sender = setup(
        end_in=600, provider_seconds=1.0, world=world, stops=stops
    )
    assert deliver(sender) == {"suppressed": 1}
    assert provider.calls == []
    assert messages.items[(1, 7)].state.status.value == "suppressed"
