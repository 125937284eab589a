"""Data retention (issue 17) on moto: the TTL stamps tasks and messages carry, and the
removal of a deleted task's messages. moto keeps expired items (only AWS deletes them),
so these check the stamps and the purge, not DynamoDB's own deleting."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import count
from typing import Any

import boto3
import pytest

from chalicelib.domain.ratelimit import task_key, task_scope
from chalicelib.domain.tasks import parse_instant
from chalicelib.services.purge import Purger
from chalicelib.settings import reset_settings
from chalicelib.storage import messages as message_store
from chalicelib.storage.messages import COUNTER_SHARDS, counter_name
from chalicelib.storage.models import PURGE_SHARD, CounterModel, RateModel, TaskModel
from chalicelib.storage.purge import DynamoPurge
from chalicelib.storage.ratelimit import DynamoRateLimiter, rate_name
from local.fake_provider import FakeProviderState
from tests.conftest import Api, FrozenClock
from tests.integration.pipeline import Pipeline, messages_of
from tests.integration.test_pipeline import END, add_client, add_task

RETENTION = timedelta(days=180)  # the default: the local stage does not set it
LEASE = timedelta(seconds=60)
# Opens at 03:00 UTC: never before these tasks end (the clock starts at 12:00Z).
CLOSED = {"send_window": {"from": "03:00", "to": "03:01"}}


@pytest.fixture
def pipeline(services: Any, api: Api) -> Pipeline:
    return Pipeline(services)


def stamps(task_id: int) -> set[datetime]:
    return {message.expires_at for message in messages_of(task_id).values()}


def test_both_tables_have_their_ttl_on_expires_at(services: Any) -> None:
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    for table in (services.settings.tasks_table, services.settings.messages_table):
        ttl = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
        assert ttl == {"AttributeName": "expires_at", "TimeToLiveStatus": "ENABLED"}, table


def test_a_created_message_expires_its_tasks_end_plus_a_lease_plus_retention(
    api: Api, pipeline: Pipeline
) -> None:
    for n in range(3):
        add_client(api, n)
    task = add_task(api)  # due: its messages are created at once
    assert len(messages_of(task["id"])) == 3
    assert stamps(task["id"]) == {parse_instant(END) + LEASE + RETENTION}


def test_a_finished_task_and_its_sent_messages_keep_their_stamps(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    for n in range(3):
        add_client(api, n)
    task = add_task(api)
    pipeline.drain()
    assert all(m.status == "sent" for m in messages_of(task["id"]).values())
    assert TaskModel.get(task["id"]).expires_at is None  # not finished yet
    pipeline.tick()
    stored = TaskModel.get(task["id"])
    assert stored.status == "finished"
    # Finished before its end: kept as long as its messages are.
    expected = parse_instant(END) + LEASE + RETENTION
    assert stored.expires_at == expected
    assert stamps(task["id"]) == {expected}


def test_a_task_finished_late_is_kept_from_its_finish(
    api: Api, pipeline: Pipeline, clock: FrozenClock
) -> None:
    add_client(api, 1)
    task = add_task(api, **CLOSED)
    pipeline.drain()  # the window opens after the end: set aside
    clock.now = parse_instant(END) + timedelta(hours=5)  # the dispatcher was down
    pipeline.tick()  # expires it, finishes the task
    stored = TaskModel.get(task["id"])
    assert stored.status == "finished"
    assert stored.expires_at == clock.now.replace(microsecond=0) + RETENTION
    assert [m.status for m in messages_of(task["id"]).values()] == ["expired"]


def test_an_end_moved_later_restamps_the_messages_written_after_the_move(
    api: Api, pipeline: Pipeline
) -> None:
    for n in range(3):
        add_client(api, n)
    task = add_task(api, **CLOSED)
    pipeline.drain()  # each set aside: its window opens after the end
    assert stamps(task["id"]) == {parse_instant(END) + LEASE + RETENTION}
    later = "2026-12-20T14:00:00Z"
    assert api.patch(f"/api/tasks/{task['id']}", {"end_time": later}).status_code == 200
    # The PATCH wakes the waiting messages (the end changed): that write re-stamps them.
    assert stamps(task["id"]) == {parse_instant(later) + LEASE + RETENTION}
    assert {m.status for m in messages_of(task["id"]).values()} == {"pending"}


def test_a_deleted_task_is_stamped_now_and_its_messages_removed_by_the_next_run(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    for n in range(3):
        add_client(api, n)
    task = add_task(api)  # its jobs are in the queue
    kept = add_task(api)  # another task, untouched
    for task_id in (task["id"], kept["id"]):  # their send rate limits were used
        DynamoRateLimiter(timedelta(seconds=0.25)).reserve([task_scope(task_id, 5)], 1, clock.now)
    assert len(messages_of(task["id"])) == 3
    assert api.delete(f"/api/tasks/{task['id']}").status_code == 204
    tombstone = TaskModel.get(task["id"])
    assert tombstone.deleted
    assert tombstone.expires_at == clock.now + timedelta(days=1)
    assert tombstone.open_shard == PURGE_SHARD
    assert len(messages_of(task["id"])) == 3  # nothing more on the request path

    pipeline.tick()  # the scheduled run: its purge pass
    assert messages_of(task["id"]) == {}
    names = [counter_name(task["id"], shard) for shard in range(COUNTER_SHARDS)]
    assert list(CounterModel.batch_get(names)) == []
    # The removals reach the counting function through the stream after the purge:
    # they leave nothing behind (they had re-created the counter items, negative).
    message_store.counts([task["id"]])  # the stream handed to the counting handler
    assert list(CounterModel.batch_get(names)) == []
    rates = [rate_name(task_key(task_id)) for task_id in (task["id"], kept["id"])]
    assert [item.name for item in RateModel.batch_get(rates)] == [rates[1]]
    assert TaskModel.get(task["id"]).open_shard is None
    assert DynamoPurge().deleted_tasks(10) == []

    pipeline.drain()  # the deleted task's jobs find nothing; the other task sends
    assert {call.msg_id // 10**10 for call in provider.sends()} == {kept["id"]}
    assert len(messages_of(kept["id"])) == 3


def test_a_purge_cut_short_resumes_on_the_next_run(api: Api, pipeline: Pipeline) -> None:
    for n in range(5):
        add_client(api, n)
    task = add_task(api, **CLOSED)
    assert api.delete(f"/api/tasks/{task['id']}").status_code == 204
    ticks = count()
    purger = Purger(DynamoPurge(), page_size=2, monotonic=lambda: float(next(ticks)))
    first = purger.purge_deleted(budget_seconds=3)  # room for one page of two
    assert (first.messages, first.incomplete) == (2, [task["id"]])
    assert len(messages_of(task["id"])) == 3
    assert DynamoPurge().deleted_tasks(10) == [task["id"]]
    ticks = count()
    second = purger.purge_deleted(budget_seconds=100)
    assert (second.tasks, second.messages, second.incomplete) == (1, 3, [])
    assert messages_of(task["id"]) == {}


@pytest.fixture
def week_retention(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """RETENTION_DAYS=7, set before the services are wired (request it before them)."""
    monkeypatch.setenv("RETENTION_DAYS", "7")
    reset_settings()


def test_the_retention_setting_reaches_the_stamps(
    week_retention: None, services: Any, api: Api, pipeline: Pipeline
) -> None:
    add_client(api, 1)
    task = add_task(api)
    expected = parse_instant(END) + LEASE + timedelta(days=7)
    assert stamps(task["id"]) == {expected}
    pipeline.drain()
    pipeline.tick()
    assert TaskModel.get(task["id"]).expires_at == expected
