"""GET /api/tasks/{id}/timeline: a task's sends over time, kept from the messages' stream
in the counts' own write (chalicelib/domain/timeline.py, chalicelib/storage/timeline.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import app as app_module
from chalicelib.domain.timeline import FINAL_STATUSES
from chalicelib.storage.messages import COUNTER_SHARDS, counter_name
from chalicelib.storage.models import CounterModel
from local.fake_provider import FakeProviderState
from local.lambda_runner import StreamPoller
from tests.conftest import Api
from tests.integration.pipeline import Pipeline
from tests.integration.test_pipeline import add_client, add_task

LATER = "2026-11-28T13:00:00Z"  # not due: nothing is sent
T0 = datetime(2026, 11, 28, 9, 30, 15, tzinfo=UTC)
ZERO = dict.fromkeys(FINAL_STATUSES, 0)


@pytest.fixture
def pipeline(services: Any, api: Api) -> Pipeline:
    return Pipeline(services)


def sums(points: list[dict[str, Any]]) -> dict[str, int]:
    return {status: sum(point[status] for point in points) for status in FINAL_STATUSES}


def stats_counts(api: Api, task_id: int) -> dict[str, int]:
    messages = api.get(f"/api/tasks/{task_id}/stats").json_body["messages"]
    return {status: messages[status] for status in FINAL_STATUSES}


def record(seq: int, task_id: int, after: str, at: datetime) -> dict[str, Any]:
    """A stream record of a message of ``task_id`` moving from pending to ``after``."""
    return {
        "eventName": "MODIFY",
        "dynamodb": {
            "Keys": {"task_id": {"N": str(task_id)}, "client_id": {"N": str(seq)}},
            "SequenceNumber": str(seq),
            "ApproximateCreationDateTime": at.timestamp(),
            "OldImage": {"status": {"S": "pending"}},
            "NewImage": {"status": {"S": after}},
        },
    }


def timeline(api: Api, task_id: int, query: str = "") -> dict[str, Any]:
    response = api.get(f"/api/tasks/{task_id}/timeline{query}")
    assert response.status_code == 200, response.body
    return dict(response.json_body)


def test_sends_are_counted_in_their_minute_and_sum_to_the_stats(
    api: Api, pipeline: Pipeline, provider: FakeProviderState
) -> None:
    for n in range(5):
        add_client(api, n)
    task = add_task(api)
    pipeline.drain()
    body = timeline(api, task["id"])
    assert body["task_id"] == task["id"]
    assert body["bucket_seconds"] == 60  # the default: seconds apart fit in any bucket
    assert sums(body["points"]) == stats_counts(api, task["id"]) == {**ZERO, "sent": 5}
    first = body["points"][0]
    assert set(first) == {"at", *FINAL_STATUSES}
    at = datetime.fromisoformat(first["at"])
    assert (at.second, at.microsecond, at.utcoffset()) == (0, 0, timedelta(0))
    assert first["at"].endswith(":00Z")  # created_at's format


def test_nothing_final_yet_is_no_points(api: Api) -> None:
    task = add_task(api, start_time=LATER)
    assert timeline(api, task["id"]) == {"task_id": task["id"], "bucket_seconds": 60, "points": []}
    assert timeline(api, task["id"], "?bucket=3600")["points"] == []


@pytest.mark.parametrize("task_id", ["999", "abc", "0"])
def test_an_unknown_task_is_404(api: Api, task_id: str) -> None:
    response = api.get(f"/api/tasks/{task_id}/timeline")
    assert response.status_code == 404
    assert response.json_body["error"] == "not_found"


def test_a_deleted_task_is_404(api: Api) -> None:
    task = add_task(api, start_time=LATER)
    api.delete(f"/api/tasks/{task['id']}")
    assert api.get(f"/api/tasks/{task['id']}/timeline").status_code == 404


@pytest.mark.parametrize("bucket", ["59", "61", "0", "-60", "60.0", "1e2", "", "day", "0060"])
def test_a_bucket_not_in_the_list_is_400_naming_it(api: Api, bucket: str) -> None:
    task = add_task(api, start_time=LATER)
    response = api.get(f"/api/tasks/{task['id']}/timeline?bucket={bucket}")
    assert response.status_code == 400
    assert response.json_body["error"] == "validation_error"
    assert list(response.json_body["fields"]) == ["bucket"]


def test_an_unknown_parameter_is_400(api: Api) -> None:
    task = add_task(api, start_time=LATER)
    response = api.get(f"/api/tasks/{task['id']}/timeline?limit=5")
    assert response.status_code == 400
    assert list(response.json_body["fields"]) == ["limit"]


def test_points_are_zero_filled_and_regrouped_by_bucket(services: Any, api: Api) -> None:
    task = add_task(api, start_time=LATER)
    task_id = task["id"]
    services.counting.handle(
        "shard-a",
        [
            record(1, task_id, "sent", T0),  # 09:30
            record(2, task_id, "failed", T0 + timedelta(seconds=30)),  # 09:30
            record(3, task_id, "sent", T0 + timedelta(minutes=3)),  # 09:33
            record(4, task_id, "expired", T0 + timedelta(hours=2)),  # 11:30
        ],
    )
    minutes = timeline(api, task_id, "?bucket=60")
    assert minutes["bucket_seconds"] == 60
    points = minutes["points"]
    assert len(points) == 121  # 09:30 to 11:30, every minute
    assert points[0] == {**ZERO, "at": "2026-11-28T09:30:00Z", "sent": 1, "failed": 1}
    assert points[1] == {**ZERO, "at": "2026-11-28T09:31:00Z"}
    assert points[3] == {**ZERO, "at": "2026-11-28T09:33:00Z", "sent": 1}
    assert points[-1] == {**ZERO, "at": "2026-11-28T11:30:00Z", "expired": 1}
    hours = timeline(api, task_id, "?bucket=3600")["points"]
    assert hours == [
        {**ZERO, "at": "2026-11-28T09:00:00Z", "sent": 2, "failed": 1},
        {**ZERO, "at": "2026-11-28T10:00:00Z"},
        {**ZERO, "at": "2026-11-28T11:00:00Z", "expired": 1},
    ]
    assert timeline(api, task_id, "?bucket=86400")["points"] == [
        {**ZERO, "at": "2026-11-28T00:00:00Z", "sent": 2, "failed": 1, "expired": 1}
    ]
    assert timeline(api, task_id)["bucket_seconds"] == 60  # 121 points: within 500


@pytest.mark.parametrize(
    ("span", "default"),
    [
        (timedelta(minutes=499), 60),  # 500 points
        (timedelta(minutes=500), 300),  # 501 minutes
        (timedelta(hours=48), 900),  # 577 five-minute points, 193 quarters
        (timedelta(days=20), 3600),  # 481 hours
        (timedelta(days=21), 86400),  # 505 hours
    ],
)
def test_the_default_bucket_is_the_smallest_within_500_points(
    services: Any, api: Api, span: timedelta, default: int
) -> None:
    task = add_task(api, start_time=LATER)
    start = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
    services.counting.handle(
        "s", [record(1, task["id"], "sent", start), record(2, task["id"], "sent", start + span)]
    )
    body = timeline(api, task["id"])
    assert body["bucket_seconds"] == default
    assert len(body["points"]) <= 500
    assert sums(body["points"])["sent"] == 2


def test_a_bucket_giving_over_50000_points_is_400_naming_one_that_fits(
    services: Any, api: Api
) -> None:
    task = add_task(api, start_time=LATER)
    services.counting.handle(
        "s",
        [
            record(1, task["id"], "sent", T0),
            record(2, task["id"], "sent", T0 + timedelta(days=40)),
        ],
    )
    response = api.get(f"/api/tasks/{task['id']}/timeline?bucket=60")
    assert response.status_code == 400
    fields = response.json_body["fields"]
    assert fields == {"bucket": "gives over 50000 points here: use 300 or more"}
    assert len(timeline(api, task["id"], "?bucket=300")["points"]) == 40 * 288 + 1


def test_a_batch_delivered_again_or_bisected_counts_once(services: Any, api: Api) -> None:
    task = add_task(api, start_time=LATER)
    batch = [
        record(n, task["id"], status, T0 + timedelta(minutes=n))
        for n, status in enumerate(["sent", "failed", "sent", "suppressed", "cancelled"], 1)
    ]
    services.counting.handle("shard-a", batch[:2])  # a bisected first try
    services.counting.handle("shard-a", batch)  # the whole batch again
    services.counting.handle("shard-a", batch)
    services.counting.handle("other-shard", batch[4:])  # another shard's own record
    body = timeline(api, task["id"])
    assert sums(body["points"]) == {
        **ZERO,
        "sent": 2,
        "failed": 1,
        "suppressed": 1,
        "cancelled": 2,
    }


def test_a_batch_over_more_hours_than_one_write_holds_counts_each_once(
    services: Any, api: Api
) -> None:
    # A backlog: 30 hours of changes in one batch, more hours than one transaction takes.
    task = add_task(api, start_time=LATER)
    batch = [record(n, task["id"], "sent", T0 + timedelta(hours=n)) for n in range(1, 31)]
    services.counting.handle("shard-a", batch)
    services.counting.handle("shard-a", batch)
    points = timeline(api, task["id"], "?bucket=3600")["points"]
    assert [point["sent"] for point in points] == [1] * 30
    stats = api.get(f"/api/tasks/{task['id']}/stats").json_body["messages"]
    assert stats["sent"] == 30  # the counts moved with them


def test_the_stream_read_again_from_its_start_counts_nothing_twice(
    services: Any, api: Api, pipeline: Pipeline, provider: FakeProviderState
) -> None:
    for n in range(4):
        add_client(api, n)
    task = add_task(api)
    pipeline.drain()
    before = timeline(api, task["id"])
    assert StreamPoller(app_module.count_messages).drain() > 0  # every record again
    assert timeline(api, task["id"]) == before
    assert sums(before["points"]) == stats_counts(api, task["id"])


def test_a_deleted_tasks_timeline_is_removed_by_the_next_run(
    services: Any, api: Api, pipeline: Pipeline
) -> None:
    task = add_task(api, start_time=LATER)
    kept = add_task(api, start_time=LATER)
    for task_id in (task["id"], kept["id"]):
        services.counting.handle(
            f"shard-{task_id}",
            [
                record(1, task_id, "sent", T0),
                record(2, task_id, "sent", T0 + timedelta(days=2)),
            ],
        )
    assert timeline_items(task["id"]) and timeline_items(kept["id"])
    assert api.delete(f"/api/tasks/{task['id']}").status_code == 204
    pipeline.tick()  # the scheduled run: its purge pass
    assert timeline_items(task["id"]) == []
    names = [counter_name(task["id"], slot) for slot in range(COUNTER_SHARDS)]
    assert list(CounterModel.batch_get(names)) == []
    assert len(timeline_items(kept["id"])) == 2
    assert sums(timeline(api, kept["id"])["points"])["sent"] == 2


def timeline_items(task_id: int) -> list[str]:
    # A scan is fine in a test: it sees what the keys the service reads by might miss.
    return sorted(
        item.name for item in CounterModel.scan() if item.name.startswith(f"timeline#{task_id}#")
    )
