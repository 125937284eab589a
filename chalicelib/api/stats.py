"""Delivery statistics (SPEC 22, 23) and the Prometheus metrics: their routes, their
OpenAPI description, and the mapping from domain values to answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalice.app import Blueprint, Response

from chalicelib import http
from chalicelib.api.auth import PROTECTED
from chalicelib.api.operation import PAGED, Operation
from chalicelib.api.tasks import NEXT, TASK, task_out
from chalicelib.bootstrap import services
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

bp = Blueprint(__name__)

STATUS_VALUES = [status.value for status in MessageStatus]
DETAIL_QUERY = ("status", *PAGED)
COUNTS = {"pending": 1, "sent": 2, "failed": 0, "expired": 0, "cancelled": 0, "suppressed": 0}
MESSAGE = {
    "id": 10000000001,
    "client_id": 1,
    "status": "sent",
    "created_at": "2027-03-01T06:00:00Z",
    "sent_at": "2027-03-01T06:00:01Z",
    "attempts": 1,
    "last_error": None,
}


@bp.route("/api/tasks/stats", methods=["GET"], **PROTECTED)
@Operation(
    "Statistics of every task",
    "statistics",
    "Each task with its message counts by status (every status present, zeros "
    "included), a page at a time.",
    query=PAGED,
    answer=PageOut[TaskStatsItem],
    answer_example={
        "items": [
            {
                "id": 1,
                "status": "running",
                "start_time": TASK["start_time"],
                "end_time": TASK["end_time"],
                "total": 3,
                "messages": COUNTS,
            }
        ],
        "next": None,
    },
)
@http.endpoint
def task_stats() -> Response:
    """SPEC 22: every task with its message counts by status."""
    params = http.query(bp.current_request, PAGED)
    page = services().stats.overview(limit=http.page_limit(params), cursor=params.get("cursor"))
    return http.ok(overview_out(page))


@bp.route("/api/tasks/{task_id}/stats", methods=["GET"], **PROTECTED)
@Operation(
    "Statistics of one task",
    "statistics",
    "The task, its message counts by status, and its messages a page at a time "
    "(all of them, or only those with `status`).",
    query=DETAIL_QUERY,
    answer=TaskStatsDetail,
    answer_example={
        "task": {**TASK, "status": "running"},
        "total": 3,
        "messages": COUNTS,
        "items": [MESSAGE],
        "next": NEXT,
    },
)
@http.endpoint
def task_detail_stats(task_id: str) -> Response:
    """SPEC 23: one task, its counts, and its messages (paged, ``?status=``)."""
    target = http.path_id(task_id, "Task")
    params = http.query(bp.current_request, DETAIL_QUERY)
    limit = http.page_limit(params)  # a bad limit is named before a bad status
    detail = services().stats.detail(
        target,
        status=message_status(params.get("status")),
        limit=limit,
        cursor=params.get("cursor"),
    )
    return http.ok(detail_out(detail))


@bp.route("/api/metrics", methods=["GET"], **PROTECTED)
@Operation(
    "Service metrics in Prometheus text format",
    "statistics",
    "Messages of the live tasks by status, live tasks by status and the send queue's "
    "depth, for a Prometheus scrape. Read from the maintained counters: its cost grows "
    "with the number of live tasks, never with the number of messages.",
    content={http.PROMETHEUS_CONTENT_TYPE: {"type": "string"}},
    answer_description=(
        "Prometheus text exposition format (`notify_messages{status=...}`, "
        "`notify_messages_created`, `notify_tasks{status=...}`, `notify_queue_jobs`)."
    ),
)
@http.endpoint
def prometheus_metrics() -> Response:
    """Messages by status, tasks by status and queue depth, in Prometheus text format."""
    http.query(bp.current_request, ())
    return Response(
        body=services().gauges.prometheus_text(),
        status_code=200,
        headers={"Content-Type": http.PROMETHEUS_CONTENT_TYPE},
    )


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
