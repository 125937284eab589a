"""A task's sends over time (the operator console's chart): its route, its OpenAPI
description, and the mapping from domain values to the answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from chalice.app import Blueprint, Response

from chalicelib import http
from chalicelib.api.auth import PROTECTED
from chalicelib.api.operation import Operation
from chalicelib.bootstrap import services
from chalicelib.domain.tasks import format_instant
from chalicelib.domain.timeline import BUCKET_RULE, BUCKETS
from chalicelib.errors import ValidationFailed
from chalicelib.schemas import TaskTimeline, TimelinePoint

if TYPE_CHECKING:
    from chalicelib.services.timeline import Timeline

bp = Blueprint(__name__)

QUERY = ("bucket",)
BUCKET_VALUES = {str(bucket): bucket for bucket in BUCKETS}


def _point(at: str, sent: int, failed: int = 0, expired: int = 0) -> dict[str, object]:
    return {
        "at": at,
        "sent": sent,
        "failed": failed,
        "expired": expired,
        "cancelled": 0,
        "suppressed": 0,
    }


@bp.route("/api/tasks/{task_id}/timeline", methods=["GET"], **PROTECTED)
@Operation(
    "Sends over time of one task",
    "statistics",
    "How many of the task's messages reached each final status in each bucket of "
    "`bucket` seconds (aligned on UTC: a day starts at 00:00Z), in time order from the "
    "first bucket with a change to the last, zero-filled between; `points` is empty "
    "while nothing has reached a final status. Without `bucket`, the smallest size "
    "giving at most 500 points. Kept from the same stream as the counts: once it has "
    "caught up, a status summed over the points is the task's count of it in "
    "`GET /api/tasks/{task_id}/stats`. A bucket that would give over 50,000 points "
    "is refused (400, naming the smallest that fits).",
    query=QUERY,
    answer=TaskTimeline,
    answer_example={
        "task_id": 5,
        "bucket_seconds": 60,
        "points": [
            _point("2027-03-01T06:00:00Z", 120, failed=2),
            _point("2027-03-01T06:01:00Z", 0),
            _point("2027-03-01T06:02:00Z", 87, expired=3),
        ],
    },
)
@http.endpoint
def task_timeline(task_id: str) -> Response:
    """A task's counts of final statuses per time bucket."""
    target = http.path_id(task_id, "Task")
    params = http.query(bp.current_request, QUERY)
    timeline = services().timeline.timeline(target, bucket=bucket_of(params.get("bucket")))
    return http.ok(timeline_out(timeline))


def bucket_of(value: str | None) -> int | None:
    if value is None:
        return None
    if value not in BUCKET_VALUES:
        raise ValidationFailed("Unknown bucket size.", {"bucket": BUCKET_RULE})
    return BUCKET_VALUES[value]


def timeline_out(timeline: Timeline) -> TaskTimeline:
    return TaskTimeline(
        task_id=timeline.task_id,
        bucket_seconds=timeline.bucket_seconds,
        points=[
            TimelinePoint(
                at=format_instant(datetime.fromtimestamp(point.at, UTC)),
                sent=point.counts["sent"],
                failed=point.counts["failed"],
                expired=point.counts["expired"],
                cancelled=point.counts["cancelled"],
                suppressed=point.counts["suppressed"],
            )
            for point in timeline.points
        ],
    )
