"""The timeline's rules (chalicelib/domain/timeline.py) and its counting from the stream:
each change to a final status counted once, in its minute, whatever comes again."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.domain.counting import StatusChange
from chalicelib.domain.timeline import (
    FINAL_STATUSES,
    MAX_POINTS,
    Point,
    day_of_hour,
    default_bucket,
    hour_of,
    hours_of_day,
    minute_counts,
    point_count,
    points,
    reached,
    smallest_fitting_bucket,
    within_hours,
)
from chalicelib.services.counting import StreamCounter, status_change
from chalicelib.storage.timeline import CODES
from tests.fakes import FakeCountLedger, World

T0 = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
AT = T0.timestamp()  # 06:00 UTC: a whole hour
M0 = int(AT // 60)
ZERO = dict.fromkeys(FINAL_STATUSES, 0)


def change(seq: int, before: str | None, after: str | None, at: float = AT) -> StatusChange:
    return StatusChange(5, seq, before, after, at)


def record(seq: int, task_id: int, before: str | None, after: str | None, at: float) -> Any:
    image = lambda status: None if status is None else {"status": {"S": status}}  # noqa: E731
    return {
        "dynamodb": {
            "Keys": {"task_id": {"N": str(task_id)}, "client_id": {"N": str(seq)}},
            "SequenceNumber": str(seq),
            "ApproximateCreationDateTime": at,
            "OldImage": image(before),
            "NewImage": image(after),
        }
    }


def test_only_a_change_to_a_final_status_is_counted() -> None:
    assert reached(change(1, None, "pending")) is None  # created
    assert reached(change(2, "pending", "pending")) is None  # claimed
    assert reached(change(3, "sent", None)) is None  # removed (a purge, the TTL)
    assert reached(change(4, "sent", "sent")) is None
    for status in FINAL_STATUSES:
        assert reached(change(5, "pending", status)) == status
    assert set(FINAL_STATUSES) == {"sent", "failed", "expired", "cancelled", "suppressed"}


def test_changes_count_in_the_minute_of_their_time() -> None:
    changes = [
        change(1, "pending", "sent", AT),
        change(2, "pending", "sent", AT + 59.9),
        change(3, "pending", "failed", AT + 60),
        change(4, None, "pending", AT + 61),
    ]
    assert minute_counts(changes) == {
        M0: Counter({"sent": 2}),
        M0 + 1: Counter({"failed": 1}),
    }
    with pytest.raises(ValueError, match="time"):
        minute_counts([StatusChange(5, 9, "pending", "sent")])


def test_hours_and_days_are_utc_epoch_ones() -> None:
    hour = hour_of(M0)
    assert hour * 3600 == AT
    assert day_of_hour(hour) == int(AT // 86400)
    assert list(hours_of_day(day_of_hour(hour)))[6] == hour  # 06:00 UTC
    assert len(hours_of_day(3)) == 24


def test_one_write_takes_the_changes_of_at_most_so_many_hours() -> None:
    changes = [change(n, "pending", "sent", AT + n * 1800) for n in range(6)]  # 3 hours
    assert within_hours(changes, 3) == changes
    assert within_hours(changes, 2) == changes[:4]
    assert within_hours(changes, 1) == changes[:2]
    claims = [change(n, "pending", "pending", AT + n * 3600) for n in range(6)]
    assert within_hours(claims, 1) == claims  # no hour item: no limit


def test_points_are_zero_filled_between_the_first_and_last_bucket() -> None:
    minutes = {M0 + 1: Counter({"sent": 2}), M0 + 4: Counter({"failed": 1}), M0 + 9: Counter()}
    found = points(minutes, 60)
    assert [point.at for point in found] == [AT + 60 * n for n in range(1, 5)]
    assert found[0] == Point(int(AT) + 60, {**ZERO, "sent": 2})
    assert found[1].counts == ZERO
    assert found[3].counts == {**ZERO, "failed": 1}
    assert points(minutes, 300) == [Point(int(AT), {**ZERO, "sent": 2, "failed": 1})]
    assert points({}, 60) == []
    assert points({M0: Counter()}, 60) == []


def test_buckets_are_aligned_on_the_utc_epoch() -> None:
    late = {M0 + 17 * 60 + 59: Counter({"expired": 1})}  # 23:59 UTC
    assert points(late, 86400) == [Point(int(AT) - 6 * 3600, {**ZERO, "expired": 1})]
    assert points(late, 900)[0].at == AT + 17 * 3600 + 45 * 60
    assert points(late, 3600)[0].at == AT + 17 * 3600


@pytest.mark.parametrize(
    ("span_minutes", "bucket"),
    [(0, 60), (499, 60), (500, 300), (2499, 300), (2500, 900), (7499, 900), (29000, 3600)],
)
def test_the_default_bucket_is_the_smallest_within_500_points(
    span_minutes: int, bucket: int
) -> None:
    minutes = [M0, M0 + span_minutes]
    assert default_bucket(minutes) == bucket
    assert point_count(M0, M0 + span_minutes, bucket) <= 500


def test_the_default_bucket_of_nothing_and_of_years() -> None:
    assert default_bucket([]) == 60
    assert default_bucket([M0, M0 + 2 * 365 * 1440]) == 86400  # 731 points: the largest


def test_the_smallest_bucket_within_the_answer_limit() -> None:
    assert smallest_fitting_bucket([M0, M0 + MAX_POINTS - 1]) == 60
    assert smallest_fitting_bucket([M0, M0 + MAX_POINTS]) == 300
    assert smallest_fitting_bucket([]) == 60
    assert smallest_fitting_bucket([0, 86400 * MAX_POINTS]) is None


def test_each_final_status_has_its_own_letter_in_the_hour_items() -> None:
    assert set(CODES) == set(FINAL_STATUSES)
    assert len(set(CODES.values())) == len(CODES)
    assert all(len(code) == 1 and not code.isdigit() for code in CODES.values())


# --- counting from the stream -------------------------------------------------------------


def setup() -> tuple[FakeCountLedger, StreamCounter]:
    ledger = FakeCountLedger(World(T0, random.Random(0)))
    return ledger, StreamCounter(ledger, clock=lambda: T0)


def test_a_record_is_timed_by_its_creation_time_or_else_when_it_came() -> None:
    timed = status_change(record(1, 5, "pending", "sent", AT + 75.5), received_at=0.0)
    assert timed is not None and timed.at == AT + 75.5
    body = record(1, 5, "pending", "sent", 0)
    del body["dynamodb"]["ApproximateCreationDateTime"]
    untimed = status_change(body, received_at=AT + 3)
    assert untimed is not None and untimed.at == AT + 3


def test_a_redelivered_or_bisected_batch_counts_each_minute_once() -> None:
    ledger, counter = setup()
    batch = [
        record(1, 5, "pending", "sent", AT),
        record(2, 5, "pending", "failed", AT + 10),
        record(3, 5, "pending", "sent", AT + 70),
        record(4, 5, None, "pending", AT + 80),
    ]
    counter.handle("shard-a", batch[:2])  # the first half of a bisected batch
    counter.handle("shard-a", batch)  # the whole batch again
    counter.handle("shard-a", batch)
    counter.handle("shard-a", batch[1:3])  # a retry from the middle
    assert ledger.timeline(5) == {
        M0: Counter({"sent": 1, "failed": 1}),
        M0 + 1: Counter({"sent": 1}),
    }
    assert ledger.counts(5) == Counter({"sent": 2, "failed": 1, "pending": -2, "total": 1})


def test_over_a_chaotic_stream_each_status_sums_to_its_count() -> None:
    # Random batches, some delivered again whole or in part, and a shard split midway.
    rng = random.Random(7)
    world = World(T0, rng)
    ledger = FakeCountLedger(world)
    counter = StreamCounter(ledger, clock=lambda: T0)
    from tests.fakes import FakeStream  # noqa: PLC0415

    stream = FakeStream()
    for client in range(40):
        stream.record(5, client, None, "pending")
    stream.drain(counter, rng)
    stream.split()
    for client in range(40):
        stream.record(5, client, "pending", rng.choice(FINAL_STATUSES))
    stream.drain(counter, rng)
    counts = ledger.counts(5)
    summed: Counter[str] = Counter()
    for moved in ledger.timeline(5).values():
        summed.update(moved)
    assert {s: summed[s] for s in FINAL_STATUSES} == {s: counts[s] for s in FINAL_STATUSES}
    assert sum(summed.values()) == 40
