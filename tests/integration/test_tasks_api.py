"""The mailing task API (SPEC items 21, 24, 25) and the task lifecycle, on a frozen clock."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.domain.tasks import TaskStatus
from chalicelib.storage import tasks as task_store
from chalicelib.storage.models import OPEN_SHARD, TaskModel
from tests.conftest import Api, FrozenClock

# The frozen clock starts at 2026-11-28T12:00:00Z.
FUTURE = {
    "start_time": "2026-11-28T13:00:00Z",
    "end_time": "2026-11-28T15:00:00Z",
    "text": "Winter sale",
    "filter": {"codes": ["900"], "tags": ["vip"]},
}
DUE = {**FUTURE, "start_time": "2026-11-28T11:00:00Z"}


def create(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/api/tasks/", body)
    assert response.status_code == 201, response.body
    return dict(response.json_body)


def error_fields(response: Any, status: int = 400) -> dict[str, str]:
    assert response.status_code == status, response.body
    return dict(response.json_body.get("fields") or {})


# --- create -----------------------------------------------------------------------------


def test_future_task_is_scheduled_with_every_field(api: Api) -> None:
    task = create(api, {**FUTURE, "send_window": {"from": "09:00", "to": "21:00"}})
    assert isinstance(task["id"], int)
    assert task == {
        "id": task["id"],
        "start_time": "2026-11-28T13:00:00Z",
        "end_time": "2026-11-28T15:00:00Z",
        "text": "Winter sale",
        "filter": {"codes": ["900"], "tags": ["vip"]},
        "send_window": {"from": "09:00", "to": "21:00"},
        "rate_limit": None,
        "status": "scheduled",
        "created_at": "2026-11-28T12:00:00Z",
        "updated_at": "2026-11-28T12:00:00Z",
    }
    assert api.get(f"/api/tasks/{task['id']}").json_body == task


def test_task_whose_start_passed_is_running(api: Api) -> None:
    assert create(api, DUE)["status"] == "running"


def test_times_with_offsets_are_answered_in_utc(api: Api) -> None:
    task = create(
        api,
        {**FUTURE, "start_time": "2026-11-28T16:00:00+03:00", "end_time": "2026-11-28T10:00-05:00"},
    )
    assert task["start_time"] == "2026-11-28T13:00:00Z"
    assert task["end_time"] == "2026-11-28T15:00:00Z"


def test_filter_defaults_to_everyone_and_duplicates_collapse(api: Api) -> None:
    body = {k: v for k, v in FUTURE.items() if k != "filter"}
    assert create(api, body)["filter"] == {"codes": [], "tags": []}
    task = create(api, {**body, "filter": {"codes": ["900", "900", "901"]}})
    assert task["filter"] == {"codes": ["900", "901"], "tags": []}


def test_end_before_start_names_end_time(api: Api) -> None:
    response = api.post("/api/tasks/", {**FUTURE, "end_time": "2026-11-28T12:30:00Z"})
    assert error_fields(response) == {"end_time": "must be after start_time"}


def test_naive_start_time_is_400(api: Api) -> None:
    response = api.post("/api/tasks/", {**FUTURE, "start_time": "2026-11-28T13:00:00"})
    assert list(error_fields(response)) == ["start_time"]


def test_end_in_the_past_is_400(api: Api) -> None:
    response = api.post(
        "/api/tasks/",
        {**FUTURE, "start_time": "2026-11-28T10:00:00Z", "end_time": "2026-11-28T11:00:00Z"},
    )
    assert error_fields(response) == {"end_time": "must be in the future"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"text": ""}, "text"),
        ({"text": "x" * 4097}, "text"),
        ({"filter": {"codes": [""]}}, "filter.codes.0"),
        ({"filter": {"tags": ["t"] * 101}}, "filter.tags"),
        ({"filter": {"region": ["x"]}}, "filter.region"),
        ({"send_window": {"from": "09:00", "to": "09:00"}}, "send_window"),
        ({"send_window": {"from": "9am", "to": "21:00"}}, "send_window.from"),
        ({"priority": 1}, "priority"),
    ],
)
def test_invalid_task_fields_are_named_and_nothing_is_stored(
    api: Api, change: dict[str, Any], field: str
) -> None:
    assert field in error_fields(api.post("/api/tasks/", {**FUTURE, **change}))
    assert api.get("/api/tasks/").json_body["items"] == []


# --- read and delete --------------------------------------------------------------------


@pytest.mark.parametrize("task_id", ["404", "abc", "-3", str(2**63)])
def test_unknown_task_is_404(api: Api, task_id: str) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        response = api.request(method, f"/api/tasks/{task_id}", {"text": "x"})
        assert response.status_code == 404, (method, response.body)
        assert response.json_body["error"] == "not_found"


def test_delete_then_get_is_404(api: Api) -> None:
    task = create(api, FUTURE)
    assert api.delete(f"/api/tasks/{task['id']}").status_code == 204
    assert api.get(f"/api/tasks/{task['id']}").status_code == 404
    assert api.delete(f"/api/tasks/{task['id']}").status_code == 404
    assert api.patch(f"/api/tasks/{task['id']}", {"text": "again"}).status_code == 404


def test_listing_pages_cover_every_task_once(api: Api) -> None:
    made = {create(api, {**FUTURE, "text": f"t{n}"})["id"] for n in range(25)}
    seen: list[int] = []
    sizes = []
    cursor = None
    while True:
        query = "?limit=10" + (f"&cursor={cursor}" if cursor else "")
        page = api.get(f"/api/tasks/{query}").json_body
        sizes.append(len(page["items"]))
        seen += [task["id"] for task in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert sizes == [10, 10, 5]
    assert sorted(seen) == sorted(made)


# --- lifecycle and updates --------------------------------------------------------------


def test_status_follows_the_clock(api: Api, clock: FrozenClock) -> None:
    task = create(api, FUTURE)
    path = f"/api/tasks/{task['id']}"
    assert api.get(path).json_body["status"] == "scheduled"
    clock.advance(hours=1)
    assert api.get(path).json_body["status"] == "running"
    clock.advance(hours=2)
    assert api.get(path).json_body["status"] == "finished"


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_scheduled_task_may_change_every_field(api: Api, clock: FrozenClock, method: str) -> None:
    task = create(api, FUTURE)
    clock.advance(minutes=5)
    change = {
        "start_time": "2026-11-29T09:00:00Z",
        "end_time": "2026-11-29T18:00:00+00:00",
        "text": "New text",
        "filter": {"codes": [], "tags": ["gold"]},
        "send_window": {"from": "10:00", "to": "20:00"},
    }
    response = api.request(method, f"/api/tasks/{task['id']}", change)
    assert response.status_code == 200, response.body
    assert response.json_body == {
        **task,
        **change,
        "end_time": "2026-11-29T18:00:00Z",
        "updated_at": "2026-11-28T12:05:00Z",
    }


def test_partial_update_keeps_other_fields(api: Api) -> None:
    task = create(api, {**FUTURE, "send_window": {"from": "09:00", "to": "21:00"}})
    updated = api.patch(f"/api/tasks/{task['id']}", {"text": "Only text"}).json_body
    assert updated == {**task, "text": "Only text"}
    removed = api.patch(f"/api/tasks/{task['id']}", {"send_window": None}).json_body
    assert removed["send_window"] is None


def test_update_that_puts_end_before_start_names_the_field(api: Api) -> None:
    task = create(api, FUTURE)
    path = f"/api/tasks/{task['id']}"
    assert error_fields(api.patch(path, {"end_time": "2026-11-28T12:30:00Z"})) == {
        "end_time": "must be after start_time"
    }
    assert error_fields(api.patch(path, {"start_time": "2026-11-28T16:00:00Z"})) == {
        "start_time": "must be before end_time"
    }
    assert api.get(path).json_body == task


def test_running_task_refuses_text_change_and_accepts_new_end(api: Api, clock: FrozenClock) -> None:
    # One matching client keeps the task running (an empty audience finishes at once).
    client = {"phone": "79001234567", "code": "900", "tag": "vip", "utc": "UTC"}
    assert api.post("/api/clients/", client).status_code == 201
    task = create(api, FUTURE)
    clock.advance(hours=1, minutes=30)
    path = f"/api/tasks/{task['id']}"
    before = api.get(path).json_body
    assert before["status"] == "running"
    for change in (
        {"text": "changed"},
        {"filter": {"codes": ["1"]}},
        {"start_time": "2026-11-28T13:10:00Z"},
        {"end_time": "2026-11-28T18:00:00Z", "text": "and text"},
    ):
        response = api.patch(path, change)
        assert response.status_code == 409, change
        assert response.json_body["error"] == "conflict"
    assert api.get(path).json_body == before

    response = api.patch(path, {"end_time": "2026-11-28T18:00:00Z"})
    assert response.status_code == 200
    assert response.json_body["end_time"] == "2026-11-28T18:00:00Z"
    window = api.patch(path, {"send_window": {"from": "08:00", "to": "22:00"}})
    assert window.status_code == 200, window.body
    # sending the unchanged fields back is not a change
    same = api.patch(path, {"text": task["text"], "end_time": "2026-11-28T18:00:00Z"})
    assert same.status_code == 200


def test_running_task_end_cannot_move_into_the_past(api: Api, clock: FrozenClock) -> None:
    task = create(api, FUTURE)
    clock.advance(hours=1, minutes=30)
    response = api.patch(f"/api/tasks/{task['id']}", {"end_time": "2026-11-28T13:15:00Z"})
    assert error_fields(response) == {"end_time": "must be in the future"}


def test_finished_task_refuses_every_change(api: Api, clock: FrozenClock) -> None:
    task = create(api, FUTURE)
    clock.advance(hours=4)
    path = f"/api/tasks/{task['id']}"
    before = api.get(path).json_body
    assert before["status"] == "finished"
    for change in ({"end_time": "2026-11-30T00:00:00Z"}, {"text": "x"}, {"send_window": None}, {}):
        assert api.patch(path, change).status_code == 409
    assert api.get(path).json_body == before


def test_stored_finished_status_wins_over_the_clock(api: Api, services: Any) -> None:
    task = create(api, DUE)
    tasks = services.task_repository
    tasks.set_status(tasks.get(task["id"]), TaskStatus.FINISHED, services.clock())
    assert api.get(f"/api/tasks/{task['id']}").json_body["status"] == "finished"
    assert (
        api.patch(f"/api/tasks/{task['id']}", {"end_time": "2026-11-30T00:00:00Z"}).status_code
        == 409
    )


# --- due tasks --------------------------------------------------------------------------


def test_due_tasks_come_from_the_sparse_index_without_a_scan(
    api: Api, services: Any, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One matching client keeps due tasks open (an empty audience finishes at once).
    client = {"phone": "79001234567", "code": "900", "tag": "vip", "utc": "UTC"}
    assert api.post("/api/clients/", client).status_code == 201
    finished = [create(api, DUE)["id"] for _ in range(30)]
    tasks = services.task_repository
    for task_id in finished:
        tasks.set_status(tasks.get(task_id), TaskStatus.FINISHED, clock())
    due = [create(api, DUE)["id"] for _ in range(3)]
    future = create(api, FUTURE)["id"]

    def no_scan(*_: object, **__: object) -> None:
        raise AssertionError("finding due tasks must not scan")

    monkeypatch.setattr(TaskModel, "scan", no_scan)
    results = task_store.find_due(clock())
    assert sorted(int(t.id) for t in results) == sorted(due)
    # Finished tasks are not even in the index: the query can only read open tasks.
    assert TaskModel.open_by_start.count(OPEN_SHARD) == len(due) + 1
    clock.advance(hours=1)
    assert sorted(int(t.id) for t in task_store.find_due(clock())) == sorted([*due, future])


# --- rate_limit (issue 18) --------------------------------------------------------------


def test_a_rate_limit_is_kept_changed_while_running_and_removed_with_null(api: Api) -> None:
    # One matching client keeps the task running (an empty audience finishes at once).
    client = {"phone": "79001234567", "code": "900", "tag": "vip", "utc": "UTC"}
    assert api.post("/api/clients/", client).status_code == 201
    task = create(api, {**DUE, "rate_limit": 20})
    assert (task["status"], task["rate_limit"]) == ("running", 20)
    assert api.get(f"/api/tasks/{task['id']}").json_body["rate_limit"] == 20
    changed = api.patch(f"/api/tasks/{task['id']}", {"rate_limit": 50})
    assert changed.status_code == 200, changed.body
    assert changed.json_body["rate_limit"] == 50
    kept = api.patch(f"/api/tasks/{task['id']}", {"end_time": "2026-11-28T16:00:00Z"})
    assert kept.json_body["rate_limit"] == 50  # left out: kept
    removed = api.patch(f"/api/tasks/{task['id']}", {"rate_limit": None})
    assert removed.status_code == 200, removed.body
    assert removed.json_body["rate_limit"] is None
    assert TaskModel.get(task["id"]).rate_limit is None


@pytest.mark.parametrize("value", [0, -1, 10_001, "20", 2.5, True, [20]])
def test_a_bad_rate_limit_is_refused_and_changes_nothing(api: Api, value: object) -> None:
    assert "rate_limit" in error_fields(api.post("/api/tasks/", {**FUTURE, "rate_limit": value}))
    task = create(api, {**FUTURE, "rate_limit": 5})
    refused = api.patch(f"/api/tasks/{task['id']}", {"rate_limit": value})
    assert "rate_limit" in error_fields(refused)
    assert api.get(f"/api/tasks/{task['id']}").json_body["rate_limit"] == 5


def test_the_integration_guide_shows_the_rate_limit_error_as_answered(api: Api) -> None:
    task = create(api, FUTURE)
    refused = api.patch(f"/api/tasks/{task['id']}", {"rate_limit": 0})
    assert error_fields(refused) == {"rate_limit": "Input should be greater than or equal to 1"}
