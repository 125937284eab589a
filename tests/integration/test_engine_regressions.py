"""The engine faults of issue 14, each shown on moto with a clock that moves only as
far as the scenario needs (never past a lease it should not pass)."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.domain.messages import message_id
from chalicelib.queue import SendJob
from local.fake_provider import FakeProviderState
from tests.conftest import Api, FrozenClock
from tests.integration.pipeline import Pipeline, messages_of
from tests.integration.test_pipeline import add_client, add_task, sent_ids


@pytest.fixture
def pipeline(services: Any, api: Api) -> Pipeline:
    return Pipeline(services)


def test_a_failed_send_is_retried_while_its_first_claim_would_still_hold(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    client = add_client(api, 1)
    task = add_task(api)
    provider.mode = "status:500"
    assert pipeline.drain().outcomes["retry"] == 1
    provider.mode = "ok"
    clock.advance(seconds=20)  # the 15 s backoff is over; the 60 s lease would not be
    pipeline.drain()
    message = messages_of(task["id"])[client]
    assert (message.status, message.attempts) == ("sent", 2)
    assert [call.msg_id for call in provider.sends()] == [message_id(task["id"], client)] * 2


def test_a_retry_set_aside_by_the_end_comes_back_when_the_end_moves(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    client = add_client(api, 1)
    task = add_task(api, end_time="2026-11-28T12:00:10Z")  # the first retry falls after it
    provider.mode = "status:500"
    assert pipeline.drain().outcomes["set_aside"] == 1
    assert messages_of(task["id"])[client].status == "pending"
    provider.mode = "ok"
    response = api.patch(f"/api/tasks/{task['id']}", {"end_time": "2026-11-28T13:00:00Z"})
    assert response.status_code == 200
    clock.advance(seconds=20)
    pipeline.tick()
    pipeline.drain()
    assert messages_of(task["id"])[client].status == "sent"
    assert sent_ids(provider) == [message_id(task["id"], client)]


def test_a_window_set_aside_by_the_end_comes_back_when_the_window_changes(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    # 22:00 in Vladivostok: its 09-21 window opens at 23:00 UTC, after the 20:00 end.
    client = add_client(api, 1, utc="Asia/Vladivostok")
    window = {"from": "09:00", "to": "21:00"}
    task = add_task(api, end_time="2026-11-28T20:00:00Z", send_window=window)
    assert pipeline.drain().outcomes["set_aside"] == 1
    response = api.patch(
        f"/api/tasks/{task['id']}", {"send_window": {"from": "08:00", "to": "23:00"}}
    )
    assert response.status_code == 200
    pipeline.drain()
    assert sent_ids(provider) == [message_id(task["id"], client)]


def test_the_api_never_waits_on_a_full_queue(
    api: Api, services: Any, pipeline: Pipeline, provider: FakeProviderState
) -> None:
    waits: list[float] = []
    services.__dict__.pop("dispatcher", None)
    services._sleep = waits.append
    limit = services.settings.queue_ahead_limit
    filler = [
        SendJob(message_id=n, task_id=999, client_id=n, phone="79000000000", utc="UTC")
        for n in range(1, limit + 1)
    ]
    services.queue.send(filler)
    assert pipeline.depth() >= limit
    clients = [add_client(api, n) for n in range(3)]
    task = add_task(api)
    assert api.post("/api/tasks/process").status_code == 202
    assert waits == []
    # The new task's first page went in anyway: it is not stuck behind the backlog.
    queued: list[SendJob] = []
    while batch := pipeline.sqs.receive_message(
        QueueUrl=pipeline.url, MaxNumberOfMessages=10, VisibilityTimeout=300
    ).get("Messages"):
        queued += [SendJob.from_body(m["Body"]) for m in batch]
    assert {job.client_id for job in queued if job.task_id == task["id"]} == set(clients)
