"""Due tasks share the queue: one page each in turn, the task served longest ago first;
the API's start never waits on the queue. On the in-memory fakes (tests/fakes.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from chalicelib.ports import Recipient
from chalicelib.services.dispatch import Dispatcher
from chalicelib.settings import Settings
from tests.fakes import (
    TIMING,
    FakeAudience,
    FakeFanoutQueue,
    FakeMessages,
    FakeQueue,
    FakeSegments,
    FakeTasks,
    World,
    make_task,
)

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


def world_with(big: int, small: int, limit: int) -> tuple[World, FakeTasks, FakeQueue, Dispatcher]:
    world = World(NOW, random.Random(1))
    tasks = FakeTasks(world)
    clients = [(Recipient(n, f"79{n:09d}", "UTC"), "big", "") for n in range(1, big + 1)]
    clients += [
        (Recipient(n, f"79{n:09d}", "UTC"), "small", "") for n in range(big + 1, big + small + 1)
    ]
    queue = FakeQueue(world)
    dispatcher = Dispatcher(
        Settings.from_env({"FANOUT_PAGE_SIZE": "5", "QUEUE_AHEAD_LIMIT": str(limit)}),
        world.clock,
        tasks=tasks,
        messages=FakeMessages(world, tasks),
        audience=FakeAudience(world, clients),
        queue=queue,
        segments=FakeSegments(world),
        fanout_queue=FakeFanoutQueue(world),
        timing=TIMING,
        sleep=world.sleep,
        monotonic=world.monotonic,
    )
    return world, tasks, queue, dispatcher


def queued_for(queue: FakeQueue, task_id: int) -> int:
    return sum(1 for job in queue.bodies() if job.task_id == task_id)


def test_a_small_task_is_not_stuck_behind_a_large_one() -> None:
    _world, tasks, queue, dispatcher = world_with(big=200, small=3, limit=12)
    end = NOW + timedelta(hours=1)
    tasks.add(make_task(1, start=NOW - timedelta(minutes=1), end=end, codes=("big",)))
    dispatcher.dispatch_due(5, wait=False)  # the big task fills the queue
    assert 12 - 5 < queued_for(queue, 1) <= 12
    tasks.add(make_task(2, start=NOW, end=end, codes=("small",)))
    for key in list(queue.jobs)[:6]:  # the senders take a few jobs
        queue.delete(key)
    dispatcher.dispatch_due(5, wait=False)
    # The small task, never served, goes first: all of it is queued in this run.
    assert queued_for(queue, 2) == 3


def test_tasks_take_turns_page_by_page() -> None:
    _world, tasks, queue, dispatcher = world_with(big=40, small=40, limit=1000)
    end = NOW + timedelta(hours=1)
    tasks.add(make_task(1, start=NOW, end=end, codes=("big",)))
    tasks.add(make_task(2, start=NOW, end=end, codes=("small",)))
    order: list[int] = []
    send = queue.send

    def recording(jobs: object, delay_seconds: float = 0, *, now_ms: int | None = None) -> None:
        order.extend({job.task_id for job in jobs})  # type: ignore[attr-defined]
        send(jobs, delay_seconds, now_ms=now_ms)  # type: ignore[arg-type]

    queue.send = recording  # type: ignore[method-assign]
    dispatcher.dispatch_due(60)
    assert order[:6] == [1, 2, 1, 2, 1, 2]
    assert queued_for(queue, 1) == queued_for(queue, 2) == 40


def test_the_api_start_queues_a_page_without_waiting_on_a_full_queue() -> None:
    world, tasks, queue, dispatcher = world_with(big=200, small=3, limit=5)
    end = NOW + timedelta(hours=1)
    tasks.add(make_task(1, start=NOW - timedelta(minutes=1), end=end, codes=("big",)))
    dispatcher.dispatch_due(5, wait=False)
    assert queue.depth() >= 5
    tasks.add(make_task(2, start=NOW, end=end, codes=("small",)))
    before = world.now
    dispatcher.start_task(2)
    assert world.now == before  # no pause: the virtual clock only moves when it sleeps
    assert queued_for(queue, 2) == 3


def test_the_schedule_never_fills_the_queue_past_its_limit() -> None:
    """A page larger than the room left under the limit used to go in whole: with the
    local stage's 95-client pages and a limit of 40, up to 134 jobs stood ahead of a task
    started next (a CI run of tests/e2e/test_engine_faults.py saw the small mailing miss
    its end). A page now fills the room, and waits for half the limit."""
    _world, tasks, queue, dispatcher = world_with(big=300, small=0, limit=12)
    larger = Settings.from_env({"FANOUT_PAGE_SIZE": "20", "QUEUE_AHEAD_LIMIT": "12"})
    dispatcher._settings = dispatcher.fanout._settings = larger  # pages larger than the limit
    end = NOW + timedelta(hours=1)
    tasks.add(make_task(1, start=NOW - timedelta(minutes=1), end=end, codes=("big",)))
    deepest = enqueued = 0
    for _ in range(20):
        enqueued += dispatcher.dispatch_due(1).enqueued
        deepest = max(deepest, queue.depth())
        for key in list(queue.jobs)[:8]:  # the senders take a few jobs
            queue.delete(key)
    assert deepest == 12
    assert enqueued >= 12 + 8 * 19  # and the fan-out keeps up with the senders
