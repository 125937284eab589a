"""Delivery statistics: counts read from the maintained counters, never by counting.

The cost of a stats call depends on the page size, not on how many messages a task
has: counts come from the counter items written with every status change, and a
task's messages are read one page at a time through a key or index condition.
"""

from __future__ import annotations

from chalicelib.clock import Clock
from chalicelib.domain.messages import MessageStatus
from chalicelib.domain.tasks import format_instant
from chalicelib.errors import ValidationFailed
from chalicelib.schemas import (
    MessageCounts,
    MessageOut,
    Page,
    TaskStatsDetail,
    TaskStatsItem,
)
from chalicelib.services.tasks import task_status, to_out
from chalicelib.storage import messages as message_store
from chalicelib.storage import tasks as task_store
from chalicelib.storage.messages import Counts
from chalicelib.storage.models import MessageModel

STATUS_VALUES = [status.value for status in MessageStatus]


def _counts_out(counts: Counts) -> MessageCounts:
    return MessageCounts(**counts.by_status())


def _message_out(message: MessageModel) -> MessageOut:
    return MessageOut(
        id=int(message.id),
        client_id=int(message.client_id),
        status=message.status,
        created_at=format_instant(message.created_at),
        sent_at=format_instant(message.sent_at) if message.sent_at else None,
        attempts=int(message.attempts or 0),
        last_error=message.last_error,
    )


class StatsService:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def overview(self, *, limit: int, cursor: str | None) -> Page[TaskStatsItem]:
        """Every task (paged) with its message counts by status."""
        now = self._clock()
        page = task_store.list_page(limit=limit, cursor=cursor)
        counts = message_store.counts([int(task.id) for task in page.items])
        items = [
            TaskStatsItem(
                id=int(task.id),
                status=task_status(task, now),
                start_time=format_instant(task.start_time),
                end_time=format_instant(task.end_time),
                total=counts[int(task.id)].total,
                messages=_counts_out(counts[int(task.id)]),
            )
            for task in page.items
        ]
        return Page[TaskStatsItem](items=items, next=page.next)

    def detail(
        self, task_id: int, *, status: str | None, limit: int, cursor: str | None
    ) -> TaskStatsDetail:
        """One task, its counts, and its messages (all, or those with one status)."""
        if status is not None and status not in STATUS_VALUES:
            raise ValidationFailed(
                "Unknown message status.", {"status": f"one of {', '.join(STATUS_VALUES)}"}
            )
        task = task_store.require(task_id)
        counts = message_store.counts([task_id])[task_id]
        page = message_store.page(task_id, status=status, limit=limit, cursor=cursor)
        return TaskStatsDetail(
            task=to_out(task, self._clock()),
            total=counts.total,
            messages=_counts_out(counts),
            items=[_message_out(message) for message in page.items],
            next=page.next,
        )
