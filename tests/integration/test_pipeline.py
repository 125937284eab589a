"""The sending pipeline (SPEC rules 1-8, API item 31) on moto with a fake provider on
loopback and a frozen clock: schedule -> fan-out -> SQS -> sender -> provider."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.bootstrap import timing as bootstrap_timing
from chalicelib.domain import lifecycle
from chalicelib.domain.messages import MessageStatus, message_id
from chalicelib.ports import Recipient
from chalicelib.storage import messages as message_store
from chalicelib.storage.fanout import DynamoFanoutSegments
from chalicelib.storage.models import ClientModel
from local.fake_provider import FakeProviderState
from tests.conftest import SENDER_TOKEN, Api, FrozenClock
from tests.integration.pipeline import Pipeline, messages_of

# The frozen clock starts at 2026-11-28T12:00:00Z.
START_PAST = "2026-11-28T11:00:00Z"
END = "2026-11-28T14:00:00Z"


@pytest.fixture
def pipeline(services: Any, api: Api) -> Pipeline:
    return Pipeline(services)


def add_client(api: Api, n: int, code: str = "900", tag: str = "vip", utc: str = "UTC") -> int:
    body = {"phone": f"7{9000000000 + n}", "code": code, "tag": tag, "utc": utc}
    response = api.post("/api/clients/", body)
    assert response.status_code == 201, response.body
    return int(response.json_body["id"])


def add_task(api: Api, **fields: Any) -> dict[str, Any]:
    body = {"start_time": START_PAST, "end_time": END, "text": "Hello", **fields}
    response = api.post("/api/tasks/", body)
    assert response.status_code == 201, response.body
    return dict(response.json_body)


def sent_ids(provider: FakeProviderState) -> list[int]:
    """Message ids the provider accepted (answered with the success body)."""
    return [call.msg_id for call in provider.sends() if call.accepted]


ZERO_COUNTS = {"total": 0, **{status.value: 0 for status in MessageStatus}}


def counts(task_id: int) -> dict[str, int]:
    found = message_store.counts([task_id])[task_id]
    return {"total": found.total, **found.by_status()}


def recount(task_id: int) -> dict[str, int]:
    statuses = Counter(m.status for m in messages_of(task_id).values())
    by_status = {s.value: statuses.get(s.value, 0) for s in MessageStatus}
    return {"total": sum(statuses.values()), **by_status}


# --- who gets a message -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("task_filter", "expected"),
    [
        ({}, {"a", "b", "c", "d", "e"}),
        ({"codes": ["900"]}, {"a", "b", "c"}),
        ({"codes": ["900", "901"]}, {"a", "b", "c", "d"}),
        ({"tags": ["vip"]}, {"a", "d"}),
        ({"tags": ["vip", "new"]}, {"a", "b", "d"}),
        ({"codes": ["900"], "tags": ["vip"]}, {"a"}),
        ({"codes": ["900", "902"], "tags": ["new", "old"]}, {"b", "e"}),
        ({"codes": ["nobody"]}, set()),
    ],
)
def test_due_task_sends_exactly_one_message_to_each_matching_client(
    api: Api,
    pipeline: Pipeline,
    provider: FakeProviderState,
    task_filter: dict[str, Any],
    expected: set[str],
) -> None:
    people = {
        "a": ("900", "vip"),
        "b": ("900", "new"),
        "c": ("900", ""),
        "d": ("901", "vip"),
        "e": ("902", "old"),
    }
    ids = {
        name: add_client(api, n, code, tag) for n, (name, (code, tag)) in enumerate(people.items())
    }
    task = add_task(api, filter=task_filter)
    pipeline.tick()
    pipeline.drain()
    expected_ids = {message_id(task["id"], ids[name]) for name in expected}
    assert sorted(sent_ids(provider)) == sorted(expected_ids)
    assert counts(task["id"]) == {**ZERO_COUNTS, "total": len(expected), "sent": len(expected)}


def test_fan_out_pages_through_a_large_audience(
    api: Api, pipeline: Pipeline, provider: FakeProviderState
) -> None:
    clients = [add_client(api, n) for n in range(23)]  # page size is 5 in tests
    add_client(api, 99, code="999")
    task = add_task(api, filter={"codes": ["900"]})
    pipeline.tick()
    pipeline.drain()
    assert sorted(sent_ids(provider)) == sorted(message_id(task["id"], c) for c in clients)
    assert counts(task["id"]) == recount(task["id"]) == {**ZERO_COUNTS, "total": 23, "sent": 23}


def test_created_due_task_starts_at_once_without_a_tick(
    api: Api, pipeline: Pipeline, provider: FakeProviderState
) -> None:
    client = add_client(api, 1)
    task = add_task(api)
    assert pipeline.depth() == 1  # queued by the POST itself
    pipeline.drain()
    assert sent_ids(provider) == [message_id(task["id"], client)]


def test_process_endpoint_runs_the_dispatcher_and_answers_202(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    client = add_client(api, 1)
    task = add_task(api, start_time="2026-11-28T12:30:00Z")
    clock.advance(minutes=31)
    response = api.post("/api/tasks/process")
    assert response.status_code == 202
    assert response.json_body == {"tasks": 1, "enqueued": 1, "finished": 0}
    assert provider.sends() == []  # it does not wait for the provider
    pipeline.drain()
    assert sent_ids(provider) == [message_id(task["id"], client)]


def test_future_task_sends_nothing_before_its_start_and_everything_after(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    clients = [add_client(api, n) for n in range(3)]
    task = add_task(api, start_time="2026-11-28T13:00:00Z")
    for _ in range(3):
        pipeline.tick()
        pipeline.drain()
        clock.advance(minutes=15)
    assert provider.sends() == []
    assert messages_of(task["id"]) == {}
    clock.advance(minutes=15)  # 13:00, no API call in between
    pipeline.tick()
    pipeline.drain()
    assert sorted(sent_ids(provider)) == sorted(message_id(task["id"], c) for c in clients)
    pipeline.tick()
    assert api.get(f"/api/tasks/{task['id']}").json_body["status"] == "finished"


# --- the provider's trouble -------------------------------------------------------------


@pytest.mark.parametrize(
    "trouble", ["status:500", "status:503", "status:429", "status:401", "garbage", "timeout"]
)
def test_retryable_failures_are_retried_until_the_provider_recovers(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock, trouble: str
) -> None:
    client = add_client(api, 1)
    task = add_task(api)
    provider.mode = trouble
    report = pipeline.drain()
    assert report.outcomes["retry"] == 1
    message = messages_of(task["id"])[client]
    assert message.status == "pending"
    assert message.attempts == 1
    assert message.last_error
    clock.advance(minutes=1)
    pipeline.drain()
    provider.mode = "ok"
    clock.advance(minutes=30)
    pipeline.drain()
    message = messages_of(task["id"])[client]
    assert message.status == "sent"
    assert message.attempts == 3
    assert sent_ids(provider) == [message_id(task["id"], client)]
    assert counts(task["id"]) == recount(task["id"])


def test_permanent_error_fails_at_once(
    api: Api, pipeline: Pipeline, provider: FakeProviderState
) -> None:
    client = add_client(api, 1)
    task = add_task(api)
    provider.mode = "status:400"
    report = pipeline.drain()
    assert report.outcomes == Counter({"failed": 1})
    message = messages_of(task["id"])[client]
    assert message.status == "failed"
    assert message.last_error == "HTTP 400"
    assert len(provider.sends()) == 1


def test_attempts_are_bounded(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    client = add_client(api, 1)
    task = add_task(api)
    provider.mode = "status:500"
    for _ in range(10):
        pipeline.drain()
        clock.advance(minutes=10)
    message = messages_of(task["id"])[client]
    assert message.status == "failed"
    assert message.attempts == 4  # MAX_ATTEMPTS in the test settings
    assert len(provider.sends()) == 4


def test_nothing_is_sent_at_or_after_the_end_and_pending_messages_expire(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    clients = [add_client(api, n) for n in range(3)]
    task = add_task(api, end_time="2026-11-28T12:10:00Z")
    provider.mode = "status:500"
    pipeline.drain()  # one failed attempt each, retries scheduled
    calls_before_end = len(provider.sends())
    clock.advance(minutes=10)  # exactly the end
    provider.mode = "ok"
    pipeline.drain()
    assert len(provider.sends()) == calls_before_end  # not one call at the end
    clock.advance(minutes=1)
    pipeline.tick()  # the sweep expires what is still pending and finishes the task
    assert {m.status for m in messages_of(task["id"]).values()} == {"expired"}
    assert counts(task["id"]) == {**ZERO_COUNTS, "total": 3, "expired": 3}
    assert api.get(f"/api/tasks/{task['id']}").json_body["status"] == "finished"
    stored = pipeline.services.task_repository.get(task["id"])
    assert stored is not None
    assert stored.status == "finished"
    assert len(clients) == 3


def test_a_job_that_arrives_after_the_end_expires_without_a_call(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    client = add_client(api, 1)
    task = add_task(api, end_time="2026-11-28T12:05:00Z")
    clock.advance(minutes=5)
    report = pipeline.drain()
    assert report.outcomes == Counter({"expired": 1})
    assert provider.sends() == []
    assert messages_of(task["id"])[client].status == "expired"


# --- duplicates, deletion, crashes ------------------------------------------------------


def test_every_job_delivered_twice_still_sends_once_per_client(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    clients = [add_client(api, n) for n in range(12)]
    task = add_task(api)
    provider.failure_rate = 0.3
    for _ in range(20):
        pipeline.tick()
        pipeline.drain(duplicate=True)
        clock.advance(minutes=5)
    successes = Counter(sent_ids(provider))
    stored = messages_of(task["id"])
    sent = {message_id(task["id"], c) for c in clients if stored[c].status == "sent"}
    assert set(successes) == sent
    assert set(successes.values()) == {1}
    # 0.3 ** 4 per message: now and then one runs out of attempts, never more than that.
    gave_up = [c for c in clients if stored[c].status != "sent"]
    assert all((stored[c].status, stored[c].attempts) == ("failed", 4) for c in gave_up)
    assert len(sent) >= 10
    assert counts(task["id"]) == recount(task["id"])


def test_the_same_job_twice_in_one_batch_calls_once(
    api: Api, pipeline: Pipeline, provider: FakeProviderState
) -> None:
    add_client(api, 1)
    add_task(api)
    messages = pipeline.receive()
    assert len(messages) == 1
    twin = {**messages[0], "MessageId": "twin"}
    assert pipeline.invoke([messages[0], twin]) == set()
    assert len(provider.sends()) == 1


def test_deleting_a_running_task_stops_all_further_calls(
    api: Api, pipeline: Pipeline, provider: FakeProviderState
) -> None:
    for n in range(8):
        add_client(api, n)
    task = add_task(api)
    first = pipeline.receive()[:3]
    pipeline.invoke(first)
    sent_before = len(provider.sends())
    assert sent_before == 3
    assert api.delete(f"/api/tasks/{task['id']}").status_code == 204
    pipeline.tick()
    report = pipeline.drain()
    assert len(provider.sends()) == sent_before
    assert report.outcomes["dropped"] >= 5


def test_interrupted_fan_out_resumes_at_the_next_page_with_no_duplicate_and_no_gap(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = [add_client(api, n) for n in range(17)]
    real_advance = DynamoFanoutSegments.advance
    calls = {"n": 0}

    def crash_on_third_checkpoint(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("the dispatcher died after writing page 3")
        return real_advance(*args, **kwargs)

    monkeypatch.setattr(DynamoFanoutSegments, "advance", crash_on_third_checkpoint)
    response = api.post(
        "/api/tasks/", {"start_time": "2026-11-28T13:00:00Z", "end_time": END, "text": "Hi"}
    )
    task_id = response.json_body["id"]
    services = pipeline.services
    services.clock.advance(hours=1)  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError):
        services.dispatcher.dispatch_due(60)
    assert len(messages_of(task_id)) == 15  # pages 1-3 written, checkpoint after page 2
    lease = services.settings.fanout_lease_seconds
    services.clock.advance(seconds=lease)  # type: ignore[attr-defined]
    # The dead run's lease has lapsed: resumes at page 3; its messages exist, nothing is
    # created twice.
    pipeline.tick()
    pipeline.drain()
    assert len(messages_of(task_id)) == 17
    assert sorted(sent_ids(provider)) == sorted(message_id(task_id, c) for c in clients)
    assert Counter(sent_ids(provider)).most_common(1)[0][1] == 1
    assert counts(task_id) == recount(task_id)


def test_provider_gets_the_token_and_a_body_matching_the_path(
    api: Api, pipeline: Pipeline, provider: FakeProviderState
) -> None:
    client = add_client(api, 7)
    task = add_task(api, text="Привет, мир")
    pipeline.drain()
    (call,) = provider.sends()
    assert call.authorization == f"Bearer {SENDER_TOKEN}"
    assert call.msg_id == message_id(task["id"], client)
    assert call.body == {"id": call.msg_id, "phone": 79000000007, "text": "Привет, мир"}


def test_wrong_token_is_retried_not_failed(
    api: Api, pipeline: Pipeline, provider: FakeProviderState
) -> None:
    client = add_client(api, 1)
    task = add_task(api)
    provider.token = "rotated"
    try:
        report = pipeline.drain()
    finally:
        provider.token = SENDER_TOKEN
    assert report.outcomes["retry"] == 1
    assert messages_of(task["id"])[client].last_error == "HTTP 401"


def test_a_poison_job_fails_alone(
    api: Api, pipeline: Pipeline, provider: FakeProviderState
) -> None:
    add_client(api, 1)
    add_task(api)
    good = pipeline.receive()
    poison = {**good[0], "MessageId": "poison", "Body": json.dumps({"hello": "world"})}
    failed = pipeline.invoke([poison, *good])
    assert failed == {"poison"}
    assert len(provider.sends()) == 1


def test_queue_stays_shallow_while_fanning_out(
    api: Api, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(40):
        add_client(api, n)
    settings = pipeline.services.settings
    shallow = type(settings)(**{**settings.__dict__, "queue_ahead_limit": 10})
    monkeypatch.setattr(pipeline.services.dispatcher, "_settings", shallow)
    monkeypatch.setattr(pipeline.services.dispatcher.fanout, "_settings", shallow)
    response = api.post(
        "/api/tasks/", {"start_time": "2026-11-28T13:00:00Z", "end_time": END, "text": "Hi"}
    )
    pipeline.services.clock.advance(hours=1)  # type: ignore[attr-defined]
    report = pipeline.services.dispatcher.dispatch_due(0.3)
    assert report.incomplete == [response.json_body["id"]]
    assert pipeline.depth() <= 10 + 5  # the limit plus at most one page
    pipeline.drain()
    pipeline.tick()
    assert pipeline.depth() <= 15


def test_a_page_larger_than_one_transaction_is_split(api: Api, services: Any) -> None:
    clients = [add_client(api, n) for n in range(130)]
    response = api.post(
        "/api/tasks/", {"start_time": "2026-11-28T13:00:00Z", "end_time": END, "text": "Hi"}
    )
    task_id = response.json_body["id"]
    records = [
        Recipient(int(c.id), c.phone, c.utc) for c in ClientModel.scan() if int(c.id) in clients
    ]
    page = message_store.create_messages(task_id, records, services.clock())
    assert len(page.created) == 130
    again = message_store.create_messages(task_id, records, services.clock())
    assert (len(again.created), len(again.existing)) == (0, 130)
    assert counts(task_id)["total"] == 130 == recount(task_id)["total"]


def test_two_copies_of_a_job_at_the_same_time_call_the_provider_once(
    api: Api, pipeline: Pipeline, provider: FakeProviderState
) -> None:
    add_client(api, 1)
    add_task(api)
    (job,) = pipeline.receive()
    twin = {**job, "MessageId": "twin", "ReceiptHandle": "other"}
    provider.latency_ms = 300  # the first copy is still calling when the second arrives
    first = threading.Thread(target=pipeline.invoke, args=([job],))
    first.start()
    time.sleep(0.1)
    pipeline.invoke([twin])
    first.join()
    assert len(provider.sends()) == 1


def test_a_job_whose_sender_died_after_claiming_it_is_sent_later(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock, services: Any
) -> None:
    client = add_client(api, 1)
    task = add_task(api)
    (job,) = pipeline.receive()
    # The claim succeeds, then the process dies before calling the provider.
    repository = services.message_repository
    (state,) = repository.states(task["id"], [client]).values()
    timing = bootstrap_timing(services.settings)
    decision = lifecycle.on_job(
        state,
        lifecycle.JobFacts(0, None),
        lifecycle.TaskFacts(deleted=False, end=clock() + timedelta(hours=1)),
        clock(),
        opening=None,
        timing=timing,
    )
    assert isinstance(decision, lifecycle.Decision) and decision.call
    assert repository.apply(task["id"], [decision.change], clock()) == {client}
    assert pipeline.invoke([job]) == set()
    assert provider.sends() == []  # still held: the copy stops
    clock.advance(minutes=2)  # the hold lapses; SQS delivers the job again
    assert pipeline.invoke([job]) == set()
    assert sent_ids(provider) == [message_id(task["id"], client)]
    assert messages_of(task["id"])[client].status == "sent"
