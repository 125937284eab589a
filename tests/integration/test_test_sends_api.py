"""Test sends (issue 18, ``POST /api/tasks/{id}/test``) on moto through chalice.test.Client,
with the fake provider on loopback: what is sent, what is not, and what is not counted."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib import logs
from chalicelib.domain.messages import TEST_SEND_BASE, is_test_send_id, message_id
from chalicelib.storage.ids import TEST_SENDS
from chalicelib.storage.models import CounterModel, MessageModel
from local.fake_provider import FakeProviderState, PhoneRule
from tests.conftest import SENDER_TOKEN, Api, FrozenClock
from tests.integration.pipeline import Pipeline
from tests.integration.test_observability import Lines

# The frozen clock starts at 2026-11-28T12:00:00Z.
PHONE, OTHER, THIRD = "79001234567", "79001234568", "79001234569"
TEXT = "Winter sale: 20% off"


def add_task(
    api: Api,
    start: str = "2026-11-28T11:00:00Z",
    end: str = "2026-11-28T14:00:00Z",
    **fields: Any,
) -> int:
    body = {"start_time": start, "end_time": end, "text": TEXT, **fields}
    response = api.post("/api/tasks/", body)
    assert response.status_code == 201, response.body
    return int(response.json_body["id"])


def add_client(api: Api, phone: str) -> int:
    body = {"phone": phone, "code": "900", "tag": "vip", "utc": "UTC"}
    response = api.post("/api/clients/", body)
    assert response.status_code == 201, response.body
    return int(response.json_body["id"])


def sent_to(api: Api, task_id: int, phones: list[Any]) -> list[dict[str, Any]]:
    response = api.post(f"/api/tasks/{task_id}/test", {"phones": phones})
    assert response.status_code == 200, response.body
    assert set(response.json_body) == {"results"}
    return list(response.json_body["results"])


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.body
    body = dict(response.json_body)
    assert body["error"] == code and body["message"]
    assert set(body) <= {"error", "message", "fields"}
    return body


def rule(provider: FakeProviderState, phone: str, mode: str, fail_first: int | None = None) -> None:
    provider.rules[phone] = PhoneRule(mode, fail_first)


def numbers_taken() -> int:
    try:
        return int(CounterModel.get(TEST_SENDS, consistent_read=True).value)
    except CounterModel.DoesNotExist:
        return 0


# --- what is sent -------------------------------------------------------------------------


def test_the_tasks_text_goes_to_each_phone_with_a_test_send_id(
    api: Api, provider: FakeProviderState
) -> None:
    task = add_task(api)
    results = sent_to(api, task, [PHONE, int(OTHER)])
    assert results == [
        {"phone": PHONE, "status": "sent", "error": None},
        {"phone": OTHER, "status": "sent", "error": None},
    ]
    calls = sorted(provider.sends(), key=lambda call: call.msg_id)
    assert [(call.phone, call.body["text"]) for call in calls] == [(PHONE, TEXT), (OTHER, TEXT)]
    assert [call.msg_id for call in calls] == [TEST_SEND_BASE + 1, TEST_SEND_BASE + 2]
    assert all(call.body["id"] == call.msg_id for call in calls)
    assert all(call.authorization == f"Bearer {SENDER_TOKEN}" for call in calls)


def test_a_permanent_refusal_is_failed_after_one_call(
    api: Api, provider: FakeProviderState
) -> None:
    task = add_task(api)
    rule(provider, OTHER, "status:400")
    results = sent_to(api, task, [PHONE, OTHER])
    assert results == [
        {"phone": PHONE, "status": "sent", "error": None},
        {"phone": OTHER, "status": "failed", "error": "HTTP 400"},
    ]
    assert [call.phone for call in provider.sends()].count(OTHER) == 1


@pytest.mark.parametrize(
    ("mode", "error"),
    [("status:503", "HTTP 503"), ("timeout", "timeout"), ("status:429", "HTTP 429")],
)
def test_a_retryable_failure_is_tried_once_more_then_reported(
    api: Api, provider: FakeProviderState, mode: str, error: str
) -> None:
    task = add_task(api)
    rule(provider, PHONE, mode)
    assert sent_to(api, task, [PHONE]) == [{"phone": PHONE, "status": "failed", "error": error}]
    calls = provider.sends()
    assert len(calls) == 2
    assert calls[0].msg_id == calls[1].msg_id  # the provider may de-duplicate the retry


def test_a_retry_that_succeeds_is_sent(api: Api, provider: FakeProviderState) -> None:
    task = add_task(api)
    rule(provider, PHONE, "status:500", fail_first=1)
    assert sent_to(api, task, [PHONE]) == [{"phone": PHONE, "status": "sent", "error": None}]
    assert [call.status for call in provider.sends()] == [500, 200]


def test_a_stopped_phone_is_suppressed_and_never_called(
    api: Api, provider: FakeProviderState
) -> None:
    task = add_task(api)
    assert api.post("/api/stoplist/", {"phone": OTHER}).status_code == 201
    results = sent_to(api, task, [PHONE, OTHER, THIRD])
    assert [(r["phone"], r["status"]) for r in results] == [
        (PHONE, "sent"),
        (OTHER, "suppressed"),
        (THIRD, "sent"),
    ]
    assert results[1]["error"] == "the phone is on the stop list"
    assert sorted(call.phone for call in provider.sends()) == [PHONE, THIRD]


def test_only_stopped_phones_call_nobody_and_take_no_id(
    api: Api, provider: FakeProviderState
) -> None:
    task = add_task(api)
    assert api.post("/api/stoplist/", {"phone": PHONE}).status_code == 201
    assert [r["status"] for r in sent_to(api, task, [PHONE])] == ["suppressed"]
    assert provider.sends() == []
    assert numbers_taken() == 0


def test_a_phone_named_twice_is_sent_once(api: Api, provider: FakeProviderState) -> None:
    task = add_task(api)
    results = sent_to(api, task, [OTHER, PHONE, int(OTHER), PHONE])
    assert [r["phone"] for r in results] == [OTHER, PHONE]
    assert sorted(call.phone for call in provider.sends()) == [PHONE, OTHER]


@pytest.mark.parametrize(
    "start", ["2026-11-28T11:00:00Z", "2026-11-29T09:00:00Z"], ids=["running", "scheduled"]
)
def test_any_live_task_may_be_tested_whatever_its_times(
    api: Api, provider: FakeProviderState, start: str
) -> None:
    window = {"from": "03:00", "to": "03:01"}  # closed at the moment
    task = add_task(api, start=start, end="2026-11-30T00:00:00Z", send_window=window)
    assert [r["status"] for r in sent_to(api, task, [PHONE])] == ["sent"]


def test_a_finished_task_may_still_be_tested(
    api: Api, provider: FakeProviderState, clock: FrozenClock
) -> None:
    task = add_task(api)
    clock.advance(hours=3)  # past its end
    assert api.post("/api/tasks/process").status_code == 202
    assert api.get(f"/api/tasks/{task}").json_body["status"] == "finished"
    assert [r["status"] for r in sent_to(api, task, [PHONE])] == ["sent"]
    assert len(provider.sends()) == 1


# --- what is not counted ------------------------------------------------------------------


def test_nothing_is_counted_and_ids_never_meet_the_tasks_messages(
    api: Api, services: Any, provider: FakeProviderState
) -> None:
    clients = [add_client(api, phone) for phone in (PHONE, OTHER)]
    task = add_task(api, filter={"codes": ["900"]})
    pipeline = Pipeline(services)
    pipeline.tick()
    pipeline.drain()
    real = {message_id(task, client) for client in clients}
    assert {call.msg_id for call in provider.sends()} == real
    stats = api.get(f"/api/tasks/{task}/stats").json_body
    overview = api.get("/api/tasks/stats").json_body
    assert stats["total"] == 2 and stats["messages"]["sent"] == 2
    rows = [m.attribute_values for m in MessageModel.query(task, consistent_read=True)]

    for _ in range(3):
        assert [r["status"] for r in sent_to(api, task, [PHONE, OTHER, THIRD])] == ["sent"] * 3
    pipeline.drain()  # nothing queued by the test sends either

    assert api.get(f"/api/tasks/{task}/stats").json_body == stats
    assert api.get("/api/tasks/stats").json_body == overview
    assert [m.attribute_values for m in MessageModel.query(task, consistent_read=True)] == rows
    tests = [call.msg_id for call in provider.sends() if call.msg_id not in real]
    assert len(tests) == len(set(tests)) == 9
    assert all(is_test_send_id(msg_id) for msg_id in tests)
    assert sorted(tests) == [TEST_SEND_BASE + n for n in range(1, 10)]
    assert numbers_taken() == 9


# --- what is refused ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "phones"),
        ({"phones": []}, "phones"),
        ({"phones": [PHONE] * 6}, "phones"),
        ({"phones": [f"7900000000{n}" for n in range(6)]}, "phones"),
        ({"phones": [PHONE, "89001234567"]}, "phones.1"),
        ({"phones": ["7900123456"]}, "phones.0"),
        ({"phones": [True]}, "phones.0"),
        ({"phones": [None]}, "phones.0"),
        ({"phones": PHONE}, "phones"),
        ({"phones": None}, "phones"),
        ({"phones": [PHONE], "text": "other"}, "text"),
    ],
)
def test_invalid_bodies_are_400_and_call_nobody(
    api: Api, provider: FakeProviderState, body: dict[str, Any], field: str
) -> None:
    task = add_task(api)
    found = assert_error(api.post(f"/api/tasks/{task}/test", body), 400, "validation_error")
    assert field in found["fields"], found
    assert provider.sends() == []
    assert numbers_taken() == 0


def test_bodies_that_are_no_json_object_are_refused(api: Api, provider: FakeProviderState) -> None:
    task = add_task(api)
    path = f"/api/tasks/{task}/test"
    assert_error(api.post(path, raw="{"), 400, "bad_request")
    assert_error(api.post(path, [PHONE]), 400, "validation_error")
    plain = api.post(
        path, raw=json.dumps({"phones": [PHONE]}), headers={"Content-Type": "text/plain"}
    )
    assert_error(plain, 415, "unsupported_media_type")
    huge = {"phones": [PHONE], "x": "y" * 70_000}
    assert_error(api.post(path, huge), 413, "payload_too_large")
    assert provider.sends() == []


@pytest.mark.parametrize("task", ["999", "abc", "0", str(2**63)])
def test_an_unknown_task_is_404_and_calls_nobody(
    api: Api, provider: FakeProviderState, task: str
) -> None:
    assert_error(api.post(f"/api/tasks/{task}/test", {"phones": [PHONE]}), 404, "not_found")
    assert provider.sends() == []


def test_a_deleted_task_is_404(api: Api, provider: FakeProviderState) -> None:
    task = add_task(api)
    assert api.delete(f"/api/tasks/{task}").status_code == 204
    assert_error(api.post(f"/api/tasks/{task}/test", {"phones": [PHONE]}), 404, "not_found")
    assert provider.sends() == []
    assert numbers_taken() == 0


def test_without_a_key_is_401_and_calls_nobody(
    api: Api, anonymous: Api, provider: FakeProviderState
) -> None:
    task = add_task(api)
    assert_error(
        anonymous.post(f"/api/tasks/{task}/test", {"phones": [PHONE]}), 401, "unauthorized"
    )
    assert provider.sends() == []


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_other_methods_are_405(api: Api, provider: FakeProviderState, method: str) -> None:
    task = add_task(api)
    response = api.request(method, f"/api/tasks/{task}/test", {"phones": [PHONE]})
    assert response.status_code == 405
    assert provider.sends() == []


# --- logs ---------------------------------------------------------------------------------


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    root = logging.getLogger(logs.LOGGER_NAME)
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


def test_one_line_per_phone_masked_and_without_the_token(
    api: Api, provider: FakeProviderState, lines: Lines
) -> None:
    task = add_task(api)
    assert api.post("/api/stoplist/", {"phone": THIRD}).status_code == 201
    rule(provider, OTHER, "status:400")
    sent_to(api, task, [PHONE, OTHER, THIRD])
    found = {line["phone"]: line for line in lines.find("test send")}
    assert set(found) == {"7900***4567", "7900***4568", "7900***4569"}
    assert [found[p]["status"] for p in sorted(found)] == ["sent", "failed", "suppressed"]
    assert all(line["task_id"] == task and line["request_id"] for line in found.values())
    assert found["7900***4568"]["error"] == "HTTP 400"
    assert is_test_send_id(found["7900***4567"]["message_id"])
    assert found["7900***4569"].get("message_id") is None  # None fields are left out
    for text in (PHONE, OTHER, THIRD, SENDER_TOKEN):
        assert not [line for line in lines.lines if text in line], text
