"""Statistics (SPEC items 22 and 23): exact counts that cost the same at any scale."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from chalicelib.storage.models import MessageModel
from local.fake_provider import FakeProviderState
from tests.conftest import Api, FrozenClock
from tests.integration.pipeline import Pipeline, messages_of
from tests.integration.test_pipeline import add_client, add_task, counts, recount

ZERO = {"pending": 0, "sent": 0, "failed": 0, "expired": 0, "cancelled": 0, "suppressed": 0}


@pytest.fixture
def pipeline(services: Any, api: Api) -> Pipeline:
    return Pipeline(services)


def test_general_stats_list_every_task_with_every_key(
    api: Api, pipeline: Pipeline, provider: FakeProviderState
) -> None:
    for n in range(2):
        add_client(api, n)
    sent = add_task(api)
    pipeline.drain()
    empty = add_task(api, filter={"codes": ["nobody"]})
    future = add_task(api, start_time="2026-11-28T13:00:00Z")
    body = api.get("/api/tasks/stats").json_body
    assert body["next"] is None
    by_id = {item["id"]: item for item in body["items"]}
    assert set(by_id) == {sent["id"], empty["id"], future["id"]}
    assert by_id[sent["id"]] == {
        "id": sent["id"],
        "status": "running",
        "start_time": sent["start_time"],
        "end_time": sent["end_time"],
        "total": 2,
        "messages": {**ZERO, "sent": 2},
    }
    assert by_id[empty["id"]]["messages"] == ZERO
    assert by_id[empty["id"]]["total"] == 0
    assert by_id[future["id"]]["status"] == "scheduled"


def test_general_stats_page(api: Api) -> None:
    made = {add_task(api, start_time="2026-11-28T13:00:00Z")["id"] for _ in range(7)}
    seen = []
    cursor = None
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = api.get(f"/api/tasks/stats{query}").json_body
        seen += [item["id"] for item in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(made)


def test_detail_stats_list_messages_with_client_ids(
    api: Api, pipeline: Pipeline, provider: FakeProviderState
) -> None:
    clients = [add_client(api, n) for n in range(2)]
    task = add_task(api)
    pipeline.drain()
    body = api.get(f"/api/tasks/{task['id']}/stats").json_body
    assert body["task"]["id"] == task["id"]
    assert body["total"] == 2
    assert body["messages"] == {**ZERO, "sent": 2}
    assert sorted(item["client_id"] for item in body["items"]) == sorted(clients)
    item = body["items"][0]
    assert set(item) == {
        "id",
        "client_id",
        "status",
        "created_at",
        "sent_at",
        "attempts",
        "last_error",
    }
    assert item["status"] == "sent"
    assert item["sent_at"] == "2026-11-28T12:00:00Z"
    assert item["attempts"] == 1
    assert item["last_error"] is None
    assert item["id"] == task["id"] * 10**10 + item["client_id"]


@pytest.mark.parametrize("task_id", ["999", "abc"])
def test_unknown_task_stats_are_404(api: Api, task_id: str) -> None:
    response = api.get(f"/api/tasks/{task_id}/stats")
    assert response.status_code == 404
    assert response.json_body["error"] == "not_found"


def test_deleted_task_stats_are_404(api: Api) -> None:
    task = add_task(api, start_time="2026-11-28T13:00:00Z")
    api.delete(f"/api/tasks/{task['id']}")
    assert api.get(f"/api/tasks/{task['id']}/stats").status_code == 404
    assert api.get("/api/tasks/stats").json_body["items"] == []


@pytest.mark.parametrize(("query", "field"), [("status=done", "status"), ("limit=0", "limit")])
def test_bad_detail_parameters_are_400(api: Api, query: str, field: str) -> None:
    task = add_task(api, start_time="2026-11-28T13:00:00Z")
    response = api.get(f"/api/tasks/{task['id']}/stats?{query}")
    assert response.status_code == 400
    assert list(response.json_body["fields"]) == [field]


def test_counts_stay_exact_under_chaos_and_duplicate_delivery(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    matching = [add_client(api, n) for n in range(20)]
    for n in range(5):
        add_client(api, 100 + n, code="777")
    task = add_task(api, filter={"codes": ["900"]}, end_time="2026-11-28T12:40:00Z")
    provider.mode = "chaos"
    provider.timeout_sleep_s = 0.6
    for _ in range(12):
        pipeline.tick()
        pipeline.drain(duplicate=True)
        clock.advance(minutes=2)
        assert counts(task["id"]) == recount(task["id"])
    clock.advance(minutes=30)  # past the end and the sweep grace
    pipeline.tick()
    final = counts(task["id"])
    assert final == recount(task["id"])
    assert final["total"] == len(matching)
    assert final["pending"] == 0
    assert final["sent"] + final["failed"] + final["expired"] == len(matching)
    assert final["sent"] > 0
    # the stats API answers the same numbers
    body = api.get(f"/api/tasks/{task['id']}/stats").json_body
    assert body["total"] == final["total"]
    assert body["messages"] == {k: final[k] for k in ZERO}
    successes = Counter(call.msg_id for call in provider.sends() if call.accepted)
    assert sum(successes.values()) == final["sent"]


def test_status_filter_pages_through_exactly_those_messages_by_index(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(9):
        add_client(api, n)
    task = add_task(api)
    provider.failure_rate = 0.0
    provider.mode = "status:400"
    first = pipeline.receive()[:4]
    pipeline.invoke(first)  # four fail permanently
    provider.mode = "ok"
    pipeline.drain()  # the other five are sent
    expected = {
        status: sorted(c for c, m in messages_of(task["id"]).items() if m.status == status)
        for status in ("sent", "failed")
    }
    assert len(expected["failed"]) == 4

    def no_scan(*_: object, **__: object) -> None:
        raise AssertionError("stats must not scan messages")

    monkeypatch.setattr(MessageModel, "scan", no_scan)
    for status, wanted in expected.items():
        got: list[int] = []
        cursor = None
        while True:
            query = f"?status={status}&limit=2" + (f"&cursor={cursor}" if cursor else "")
            page = api.get(f"/api/tasks/{task['id']}/stats{query}").json_body
            assert all(item["status"] == status for item in page["items"])
            got += [item["client_id"] for item in page["items"]]
            cursor = page["next"]
            if cursor is None:
                break
        assert sorted(got) == wanted
    pending = api.get(f"/api/tasks/{task['id']}/stats?status=pending").json_body
    assert pending["items"] == []
