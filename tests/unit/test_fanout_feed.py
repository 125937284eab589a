"""A rate-limited task's fan-out feeds the send queue at the task's rate, at most
FEED_AHEAD ahead (chalicelib/services/fanout.py). On the in-memory fakes."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from chalicelib.ports import Recipient
from chalicelib.services.dispatch import Dispatcher
from chalicelib.services.fanout import FEED_AHEAD, FEED_REFILL
from chalicelib.settings import Settings
from tests.fakes import (
    TIMING,
    FakeAudience,
    FakeFanoutQueue,
    FakeMessages,
    FakeQueue,
    FakeRateLimiter,
    FakeSegments,
    FakeTasks,
    World,
    make_task,
)

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
RATE = 4
PAGE = 40


def test_a_full_feed_waits_for_a_whole_refill_instead_of_trickling_pages() -> None:
    """Once FEED_AHEAD of a task's jobs were queued, its fan-out came back every second
    and queued the one to three turns freed meanwhile: a page (a task read, a query, a
    batch write, a checkpoint) per message or two. On a loaded emulator those pages cost
    the senders their pace (a CI run: 3.7/s of a task's 4/s). A page now waits until
    FEED_REFILL of turns are free."""
    world = World(NOW, random.Random(1))
    tasks = FakeTasks(world)
    clients = [(Recipient(n, f"79{n:09d}", "UTC"), "c", "") for n in range(1, 601)]
    queue, fanout_queue = FakeQueue(world), FakeFanoutQueue(world)
    dispatcher = Dispatcher(
        Settings.from_env({"FANOUT_PAGE_SIZE": str(PAGE), "QUEUE_AHEAD_LIMIT": "1000"}),
        world.clock,
        tasks=tasks,
        messages=FakeMessages(world, tasks),
        audience=FakeAudience(world, clients),
        queue=queue,
        segments=FakeSegments(world),
        fanout_queue=fanout_queue,
        timing=TIMING,
        sleep=world.sleep,
        monotonic=world.monotonic,
        feed=FakeRateLimiter(world, horizon=FEED_AHEAD),
    )
    pages: list[int] = []
    send = queue.send

    def recording(jobs: object, delay_seconds: float = 0, *, now_ms: int | None = None) -> None:
        if jobs:
            pages.append(len(jobs))  # type: ignore[arg-type]
        send(jobs, delay_seconds, now_ms=now_ms)  # type: ignore[arg-type]

    queue.send = recording  # type: ignore[method-assign]
    task = make_task(1, start=NOW, end=NOW + timedelta(hours=1), codes=("c",))
    tasks.add(replace(task, rate_limit=RATE))
    rng = random.Random(2)
    while sum(pages) < len(clients) and world.now < NOW + timedelta(minutes=5):
        dispatcher.dispatch_due(1)
        while (job := fanout_queue.take(rng)) is not None:
            dispatcher.fanout.run_segment(job, 5)
        world.advance(1)
    assert sum(pages) == len(clients)
    # At most FEED_AHEAD queued ahead: the whole audience takes its time at the rate.
    assert world.now >= NOW + timedelta(seconds=len(clients) / RATE) - FEED_AHEAD
    refill = min(PAGE, round(RATE * FEED_REFILL.total_seconds()))
    assert min(pages[:-1]) >= refill, pages
    # 600 messages at 4/s: 183 pages before, 24 now.
    assert len(pages) <= len(clients) // refill + 3, pages
