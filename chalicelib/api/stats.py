"""Delivery statistics at the HTTP edge."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalicelib.api.tasks import task_out
from chalicelib.domain.messages import Message, MessageStatus
from chalicelib.domain.tasks import format_instant
from chalicelib.errors import ValidationFailed
from chalicelib.schemas import MessageCounts, MessageOut, TaskStatsDetail, TaskStatsItem
from chalicelib.schemas import Page as PageOut

# For the type checker only: the modules behind them import boto3, which the app's
# import (every function's cold start) should not pay for here (see bootstrap.py).
if TYPE_CHECKING:
    from chalicelib.ports import Counts, Page
    from chalicelib.services.stats import TaskCounts, TaskDetail

STATUS_VALUES = [status.value for status in MessageStatus]


def message_status(value: str | None) -> MessageStatus | None:
    """The ``status`` filter of a task's messages."""
    if value is None:
        return None
    if value not in STATUS_VALUES:
        raise ValidationFailed(
            "Unknown message status.", {"status": f"one of {', '.join(STATUS_VALUES)}"}
        )
    return MessageStatus(value)


def _counts_out(counts: Counts) -> MessageCounts:
    return MessageCounts(**counts.by_status())


def _message_out(message: Message) -> MessageOut:
    return MessageOut(
        id=message.id,
        client_id=message.client_id,
        status=message.status.value,
        created_at=format_instant(message.created_at),
        sent_at=format_instant(message.sent_at) if message.sent_at else None,
        attempts=message.attempts,
        last_error=message.last_error,
    )


def overview_out(page: Page[TaskCounts]) -> PageOut[TaskStatsItem]:
    items = [
        TaskStatsItem(
            id=item.task.id,
            status=item.task.status,
            start_time=format_instant(item.task.start),
            end_time=format_instant(item.task.end),
            total=item.counts.total,
            messages=_counts_out(item.counts),
        )
        for item in page.items
    ]
    return PageOut[TaskStatsItem](items=items, next=page.next)


def detail_out(detail: TaskDetail) -> TaskStatsDetail:
    return TaskStatsDetail(
        task=task_out(detail.task),
        total=detail.counts.total,
        messages=_counts_out(detail.counts),
        items=[_message_out(message) for message in detail.messages.items],
        next=detail.messages.next,
    )
