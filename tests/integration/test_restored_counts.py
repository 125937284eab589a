"""A restore of the local stack recounts the messages (local/emulator.py).

The counts follow the messages table's stream a moment behind, and a restore starts the
stream over: what a killed stack had written but not yet counted was lost for good
(tests/e2e/test_restart.py saw a 150-client mailing end at total 120, pending -12).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from chalicelib.domain.messages import MessageStatus
from chalicelib.domain.tasks import TaskPlan, TaskStatus
from chalicelib.ports import Recipient
from chalicelib.storage import messages as message_store
from chalicelib.storage.models import CounterModel
from local.emulator import MotoItems, new_stream_shards, recount_messages
from tests.conftest import FrozenClock


def test_a_restore_counts_every_message_once_whatever_the_counters_said(
    services: Any, clock: FrozenClock
) -> None:
    settings = services.settings
    plan = TaskPlan(
        start=clock(),
        end=clock() + timedelta(hours=1),
        text="Hi",
        codes=("900",),
        tags=(),
        window=None,
    )
    task = services.task_repository.create(plan, TaskStatus.RUNNING, clock())
    recipients = [Recipient(n, f"7900000{n:04d}", "UTC") for n in range(1, 8)]
    message_store.create_messages(task.id, recipients, clock())
    # Counts a killed stack left behind: some creations never counted, a stale mark.
    CounterModel(
        message_store.counter_name(task.id, 3),
        total=2,
        pending=2,
        marks='{"x":"1"}',
        timeline_days={20785},  # the timeline's hour items it lists were restored too
    ).save()

    # What the emulator does after a restore: recount, then start the stream over.
    tasks = recount_messages(
        MotoItems(), settings.aws_region, settings.messages_table, settings.counters_table
    )
    new_stream_shards()

    assert tasks == 1
    counts = message_store.counts([task.id])[task.id]
    assert (counts.total, counts.pending) == (7, 7)
    assert counts.by_status()[MessageStatus.SENT.value] == 0
    assert CounterModel.get(message_store.counter_name(task.id, 3)).marks is None
    assert CounterModel.get(message_store.counter_name(task.id, 3)).timeline_days == {20785}
