"""The parallel fan-out (issue 17): segments that cover the audience once, workers that
hold one segment each, a watchdog for lost jobs. On the in-memory fakes."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.domain.fanout import plan, ranks_for
from chalicelib.ports import Recipient
from chalicelib.queue import FanoutJob
from chalicelib.services.dispatch import Dispatcher
from chalicelib.settings import Settings
from tests.fakes import (
    TIMING,
    Crash,
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


@pytest.mark.parametrize("max_id", [0, 1, 7, 100, 101, 9_999])
@pytest.mark.parametrize("ranks", [1, 3, 8])
def test_segments_cover_every_id_once(max_id: int, ranks: int) -> None:
    segments = plan(2, max_id, ranks)
    assert len(segments) == 2 * ranks
    assert [s.index for s in segments] == list(range(2 * ranks))
    for part in (0, 1):
        ids = [i for s in segments if s.part == part for i in range(s.lo, s.hi + 1)]
        assert sorted(ids) == list(range(1, max_id + 1))


def test_ranks_follow_the_audience_size_up_to_the_cap() -> None:
    assert ranks_for(0, clients_per_segment=100, max_ranks=8) == 1
    assert ranks_for(250, clients_per_segment=100, max_ranks=8) == 3
    assert ranks_for(10**6, clients_per_segment=10_000, max_ranks=100) == 100
    assert ranks_for(10**7, clients_per_segment=10_000, max_ranks=100) == 100


def test_fanout_jobs_parse_only_what_this_code_wrote() -> None:
    job = FanoutJob(7, 3)
    assert FanoutJob.from_body(job.to_body()) == job
    for body in (
        '{"v":1,"fanout":{"task_id":1}}',
        '{"v":1,"fanout":{"task_id":"1","segment":0}}',
        '{"v":2,"fanout":{"task_id":1,"segment":0}}',
        "[]",
    ):
        with pytest.raises(ValueError):
            FanoutJob.from_body(body)


class Rig:
    def __init__(self, clients: int, **env: str) -> None:
        self.world = World(NOW, random.Random(3))
        self.tasks = FakeTasks(self.world)
        self.messages = FakeMessages(self.world, self.tasks)
        self.queue = FakeQueue(self.world)
        self.jobs = FakeFanoutQueue(self.world)
        self.segments = FakeSegments(self.world)
        people = [(Recipient(n, f"79{n:09d}", "UTC"), "900", "") for n in range(1, clients + 1)]
        self.dispatcher = Dispatcher(
            Settings.from_env(
                {
                    "FANOUT_PAGE_SIZE": "5",
                    "FANOUT_SEGMENT_CLIENTS": "10",
                    "FANOUT_MAX_SEGMENTS": "4",
                    "FANOUT_LEASE_SECONDS": "30",
                    "FANOUT_STALL_SECONDS": "60",
                    **env,
                }
            ),
            self.world.clock,
            tasks=self.tasks,
            messages=self.messages,
            audience=FakeAudience(self.world, people),
            queue=self.queue,
            segments=self.segments,
            fanout_queue=self.jobs,
            timing=TIMING,
            sleep=self.world.sleep,
            monotonic=self.world.monotonic,
        )
        self.tasks.add(make_task(1, start=NOW - timedelta(minutes=1), end=NOW + timedelta(hours=1)))

    def queued(self) -> list[int]:
        return sorted(job.client_id for job in self.queue.bodies())

    def work(self) -> int:
        """Run every visible fan-out job once; how many ran."""
        ran = 0
        while (job := self.jobs.take(self.world.rng)) is not None:
            self.dispatcher.fanout.run_segment(job, 30)
            ran += 1
        return ran


def test_the_start_plans_segments_and_workers_queue_everyone_once() -> None:
    rig = Rig(40)
    rig.dispatcher.start_task(1)
    assert rig.tasks.items[1].fanout.ranks == 4
    assert len(rig.jobs.jobs) == 4  # one job per segment
    assert len(rig.queued()) == 5  # the API's first page
    rig.work()
    assert rig.queued() == list(range(1, 41))
    assert rig.tasks.items[1].fanout.done


def test_a_second_worker_on_a_held_segment_stops_at_once() -> None:
    rig = Rig(40)
    rig.dispatcher.start_task(1)
    job = FanoutJob(1, 2)
    held = rig.segments.claim(1, 2, owner="other", until_ms=10**15, now_ms=0)
    assert held is not None
    report = rig.dispatcher.fanout.run_segment(job, 30)
    assert report.enqueued == 0


def test_a_worker_that_dies_is_resumed_after_its_lease_with_no_gap_or_duplicate() -> None:
    rig = Rig(40)
    rig.dispatcher.start_task(1)
    rig.world.crash_at = rig.world.io_steps + 12  # somewhere in the first worker's pages
    with pytest.raises(Crash):
        rig.work()
    rig.world.crash_at = None
    rig.work()  # the other segments; the dead one is held until its lease lapses
    rig.world.advance(61)
    rig.dispatcher.dispatch_due(30)  # the watchdog queues the stalled segment again
    rig.work()
    rig.dispatcher.dispatch_due(30)
    # A crash between a page's messages and its jobs leaves them to a wake time (the
    # resumed worker finds them written and watches them): the watchdog's later run.
    rig.world.advance(TIMING.watchdog.total_seconds() + 1)
    rig.dispatcher.dispatch_due(30)
    created = sorted(client for (_task, client) in rig.messages.items)
    assert created == list(range(1, 41))
    assert sorted(set(rig.queued())) == list(range(1, 41))
    assert rig.tasks.items[1].fanout.done


def test_a_full_send_queue_sends_the_worker_away_to_come_back_later() -> None:
    rig = Rig(40, QUEUE_AHEAD_LIMIT="4")
    rig.dispatcher.start_task(1)  # 5 jobs queued: more than the limit
    before = len(rig.jobs.jobs)
    assert rig.work() == before
    assert len(rig.queued()) == 5  # nothing more while full
    waiting = [at for at, _ in rig.jobs.jobs]
    assert len(waiting) == before and all(at > rig.world.now for at in waiting)
    rig.queue.jobs.clear()  # the senders take everything
    rig.world.advance(2)
    rig.work()
    assert len(rig.queued()) == 4  # a page fills the room, no more


def test_workers_stop_at_the_end_and_for_a_deleted_task() -> None:
    rig = Rig(40)
    rig.dispatcher.start_task(1)
    rig.tasks.delete(1, rig.world.now)
    rig.work()
    assert len(rig.queued()) == 5
    other = Rig(40)
    other.dispatcher.start_task(1)
    other.world.advance(3600)
    other.work()
    assert len(other.queued()) == 5


def test_the_watchdog_queues_again_a_segment_whose_job_was_lost() -> None:
    """The schedule's own pages wait while the send queue is full; its watchdog does not:
    segments nobody holds that have not moved for FANOUT_STALL_SECONDS get a job again, so
    parallel workers pick them up once there is room."""
    rig = Rig(40, QUEUE_AHEAD_LIMIT="4")
    rig.dispatcher.start_task(1)  # the send queue is full now
    rig.jobs.jobs.clear()  # every segment's job lost
    held = rig.segments.claim(1, 3, owner="alive", until_ms=10**15, now_ms=0)
    assert held is not None
    rig.world.advance(30)
    rig.dispatcher.dispatch_due(5, wait=False)
    assert rig.jobs.jobs == []  # not stalled yet
    rig.world.advance(31)
    rig.dispatcher.dispatch_due(5, wait=False)
    # Segment 0 moved (the API's page) but long ago; 1 and 2 never did; 3 is held.
    assert sorted(job.segment for _, job in rig.jobs.jobs) == [0, 1, 2]


def test_the_apis_first_page_is_of_the_audience_not_an_empty_segment() -> None:
    """SPEC rule 1 and the starvation e2e: a small mailing's clients in the last segment
    (ids 31-33 of 40; code 900 only there) are queued by the API's own start, not left to
    a worker that waits for room behind a big mailing (make test failed on this: the
    first page went to the empty segment 0 and the rest waited 38 s)."""
    rig = Rig(40)
    people = [(Recipient(n, f"79{n:09d}", "UTC"), "901", "") for n in range(1, 31)]
    people += [(Recipient(n, f"79{n:09d}", "UTC"), "900", "") for n in range(31, 34)]
    people += [(Recipient(n, f"79{n:09d}", "UTC"), "901", "") for n in range(34, 41)]
    rig.dispatcher.fanout._audience = FakeAudience(rig.world, people)
    rig.tasks.items[1] = replace(rig.tasks.items[1], codes=("900",))
    rig.dispatcher.start_task(1)
    assert rig.queued() == [31, 32, 33]
