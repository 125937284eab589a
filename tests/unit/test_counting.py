"""The counts from the messages' stream: each change counted once, whatever comes again
(chalicelib/domain/counting.py, chalicelib/services/counting.py)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.domain.counting import StatusChange, counter_slot, deltas, not_counted
from chalicelib.services.counting import StreamCounter
from tests.fakes import Crash, FakeCountLedger, World

T0 = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


def record(seq: int, task_id: int, before: str | None, after: str | None) -> dict[str, Any]:
    image = lambda status: None if status is None else {"status": {"S": status}}  # noqa: E731
    return {
        "eventName": "INSERT" if before is None else "MODIFY",
        "dynamodb": {
            "Keys": {"task_id": {"N": str(task_id)}, "client_id": {"N": str(seq)}},
            "SequenceNumber": str(seq),
            "OldImage": image(before),
            "NewImage": image(after),
        },
    }


def setup() -> tuple[World, FakeCountLedger, StreamCounter]:
    world = World(T0, random.Random(0))
    ledger = FakeCountLedger(world)
    return world, ledger, StreamCounter(ledger)


def test_deltas_move_total_and_statuses_and_ignore_other_changes() -> None:
    changes = [
        StatusChange(1, 10, None, "pending"),
        StatusChange(1, 11, None, "pending"),
        StatusChange(1, 12, "pending", "pending"),  # a claim
        StatusChange(1, 13, "pending", "sent"),
        StatusChange(1, 14, "pending", None),  # removed: a purge or retention's TTL
    ]
    assert deltas(changes) == {"total": 2, "pending": 1, "sent": 1}
    assert [change.counts for change in changes] == [True, True, False, True, False]
    assert not_counted(changes, 12) == changes[3:]
    assert not_counted(changes, None) == changes


def test_a_shard_always_writes_to_the_same_counter_slot() -> None:
    slots = {counter_slot(f"shardId-{n}", 8) for n in range(64)}
    assert slots == set(range(8))  # spread over every slot
    assert counter_slot("shardId-7", 8) == counter_slot("shardId-7", 8)


def test_a_batch_delivered_again_counts_nothing_twice() -> None:
    _, ledger, counter = setup()
    batch = [record(1, 5, None, "pending"), record(2, 5, None, "pending")]
    counter.handle("shard-a", batch)
    counter.handle("shard-a", batch)
    counter.handle("shard-a", batch[:1])  # a bisected retry
    assert ledger.counts(5) == Counter({"total": 2, "pending": 2})
    counter.handle("shard-a", [*batch, record(3, 5, "pending", "sent")])  # redelivered + new
    assert ledger.counts(5) == Counter({"total": 2, "pending": 1, "sent": 1})


def test_a_crash_after_one_tasks_write_counts_it_once_on_redelivery() -> None:
    world, ledger, counter = setup()
    batch = [
        record(1, 5, None, "pending"),
        record(2, 6, None, "pending"),
        record(3, 5, "pending", "failed"),
    ]
    world.crash_at = world.io_steps + 3  # after task 5's write, before task 6's
    with pytest.raises(Crash):
        counter.handle("shard-a", batch)
    assert ledger.counts(5) == Counter({"total": 1, "failed": 1})
    assert ledger.counts(6) == Counter()
    counter.handle("shard-a", batch)  # Lambda delivers the batch again
    assert ledger.counts(5) == Counter({"total": 1, "failed": 1})
    assert ledger.counts(6) == Counter({"total": 1, "pending": 1})


def test_shards_count_apart_in_any_order() -> None:
    # A partition split: the task's messages move to two child shards read side by side.
    _, ledger, counter = setup()
    counter.handle("parent", [record(1, 5, None, "pending"), record(2, 5, None, "pending")])
    left = [record(10, 5, "pending", "sent")]
    right = [record(7, 5, "pending", "expired")]  # numbers of other shards do not compare
    counter.handle("parent.1", right)
    counter.handle("parent.0", left)
    counter.handle("parent.1", right)
    assert ledger.counts(5) == Counter({"total": 2, "sent": 1, "expired": 1})


class FailingFor:
    """A ledger whose write fails for one task (an error, not a crash)."""

    def __init__(self, ledger: FakeCountLedger, task_id: int) -> None:
        self.ledger, self.task_id = ledger, task_id

    def add(self, shard_id: str, task_id: int, changes: Any) -> None:
        if task_id == self.task_id:
            raise RuntimeError("throttled")
        self.ledger.add(shard_id, task_id, changes)


def test_a_failed_write_reports_its_first_record_and_the_retry_from_there_is_exact() -> None:
    _, ledger, _ = setup()
    batch = [
        record(1, 5, None, "pending"),
        record(2, 6, None, "pending"),
        record(3, 5, "pending", "sent"),
        record(4, 6, "pending", "sent"),
    ]
    result = StreamCounter(FailingFor(ledger, 6)).handle("s", batch)  # type: ignore[arg-type]
    assert result.response() == {"state": {}, "batchItemFailures": [{"itemIdentifier": "2"}]}
    StreamCounter(ledger).handle("s", batch[1:])  # Lambda goes on from the failed record
    assert ledger.counts(5) == Counter({"total": 1, "sent": 1})
    assert ledger.counts(6) == Counter({"total": 1, "sent": 1})


def test_changes_that_keep_the_status_write_nothing() -> None:
    world, ledger, counter = setup()
    steps = world.io_steps
    counter.handle("s", [record(1, 5, "pending", "pending"), {"dynamodb": {"Keys": {}}}])
    assert world.io_steps == steps
    assert ledger.items == {}


def test_an_event_without_a_shard_id_is_refused() -> None:
    # Only a tumbling window puts shardId in the event; without it no mark can be kept.
    _, _, counter = setup()
    with pytest.raises(ValueError, match="shardId"):
        counter.handle_event({"Records": [record(1, 5, None, "pending")]})
    result = counter.handle_event({"Records": [record(1, 5, None, "pending")], "shardId": "s"})
    assert result.counted_tasks == 1
