"""Campaign controls (issue 18) through the API and the pipeline, on moto with the fake
provider and a frozen clock: pause, resume and cancel a mailing; the stop list at the
provider call; what the statistics and the metrics say of it."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chalicelib.domain.messages import message_id
from local.fake_provider import FakeProviderState
from tests.conftest import Api, FrozenClock
from tests.integration.pipeline import Pipeline, messages_of
from tests.integration.test_pipeline import (
    ZERO_COUNTS,
    add_client,
    add_task,
    counts,
    recount,
    sent_ids,
)

# The frozen clock starts at 2026-11-28T12:00:00Z; add_task's end is 14:00.
FUTURE_START = "2026-11-28T13:00:00Z"
CONTROLS = ("pause", "resume", "cancel")
AUDIENCE = 12  # fan-out pages of 5 in tests: a mailing that takes a few rounds


@pytest.fixture
def pipeline(services: Any, api: Api) -> Pipeline:
    return Pipeline(services)


def control(api: Api, task_id: int | str, action: str, status: int = 200) -> dict[str, Any]:
    response = api.post(f"/api/tasks/{task_id}/{action}")
    assert response.status_code == status, response.body
    return dict(response.json_body)


def assert_error(body: dict[str, Any], code: str) -> None:
    assert body["error"] == code and body["message"]
    assert set(body) <= {"error", "message", "fields"}


def status_of(api: Api, task_id: int) -> str:
    return str(api.get(f"/api/tasks/{task_id}").json_body["status"])


def stats(api: Api, task_id: int) -> dict[str, Any]:
    response = api.get(f"/api/tasks/{task_id}/stats")
    assert response.status_code == 200, response.body
    return dict(response.json_body)


def send_one_batch(pipeline: Pipeline, size: int) -> None:
    """Hand the sender ``size`` of the queued jobs (the rest stay queued): a mailing
    caught in the middle."""
    messages = pipeline.receive()[:size]
    assert len(messages) == size
    assert not pipeline.invoke(messages)
    pipeline.sqs.delete_message_batch(
        QueueUrl=pipeline.url,
        Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
        ],
    )


def run_everything(pipeline: Pipeline, clock: FrozenClock, rounds: int = 3) -> None:
    """What the schedule, the fan-out and the sender would do meanwhile."""
    for _ in range(rounds):
        pipeline.tick()
        pipeline.fan_out()
        pipeline.drain()
        clock.advance(minutes=1)


def mid_mailing(api: Api, pipeline: Pipeline, provider: FakeProviderState) -> dict[str, Any]:
    """A running task with AUDIENCE clients: two messages sent, the rest queued or not
    yet fanned out."""
    for n in range(AUDIENCE):
        add_client(api, n)
    task = add_task(api)
    send_one_batch(pipeline, 2)
    assert len(sent_ids(provider)) == 2
    return task


# --- the routes' answers ----------------------------------------------------------------


def test_pause_and_resume_a_running_task(api: Api, clock: FrozenClock) -> None:
    add_client(api, 1)  # its message stays pending: the resumed task is running
    task = add_task(api)
    clock.advance(minutes=1)
    paused = control(api, task["id"], "pause")
    assert paused == {**task, "status": "paused", "updated_at": "2026-11-28T12:01:00Z"}
    assert api.get(f"/api/tasks/{task['id']}").json_body == paused
    listed = {t["id"]: t for t in api.get("/api/tasks/").json_body["items"]}
    assert listed[task["id"]]["status"] == "paused"
    clock.advance(minutes=1)
    resumed = control(api, task["id"], "resume")
    assert resumed == {**task, "status": "running", "updated_at": "2026-11-28T12:02:00Z"}
    assert status_of(api, task["id"]) == "running"


def test_pause_and_resume_a_scheduled_task(api: Api, clock: FrozenClock) -> None:
    task = add_task(api, start_time=FUTURE_START)
    assert task["status"] == "scheduled"
    assert control(api, task["id"], "pause")["status"] == "paused"
    assert control(api, task["id"], "resume")["status"] == "scheduled"
    control(api, task["id"], "pause")
    clock.advance(hours=1, minutes=1)  # its start passes while paused
    assert status_of(api, task["id"]) == "paused"
    assert control(api, task["id"], "resume")["status"] == "running"


@pytest.mark.parametrize("status", ["scheduled", "running", "paused"])
def test_cancel_answers_the_task_cancelled(api: Api, status: str) -> None:
    task = add_task(api, start_time=FUTURE_START if status == "scheduled" else "2026-11-28T11:00Z")
    if status == "paused":
        control(api, task["id"], "pause")
    cancelled = control(api, task["id"], "cancel")
    assert cancelled == {**task, "status": "cancelled"}
    assert status_of(api, task["id"]) == "cancelled"


@pytest.mark.parametrize("action", CONTROLS)
@pytest.mark.parametrize("path_id", ["999999", "0", "abc"])
def test_a_control_of_an_unknown_task_is_404(api: Api, action: str, path_id: str) -> None:
    assert_error(control(api, path_id, action, 404), "not_found")


@pytest.mark.parametrize("action", CONTROLS)
def test_a_control_of_a_deleted_task_is_404(api: Api, action: str) -> None:
    task = add_task(api)
    assert api.delete(f"/api/tasks/{task['id']}").status_code == 204
    assert_error(control(api, task["id"], action, 404), "not_found")


@pytest.mark.parametrize("action", CONTROLS)
def test_a_control_without_the_key_is_401_and_changes_nothing(
    api: Api, anonymous: Api, action: str
) -> None:
    task = add_task(api)
    if action == "resume":
        task = control(api, task["id"], "pause")
    response = anonymous.post(f"/api/tasks/{task['id']}/{action}")
    assert response.status_code == 401, response.body
    assert response.json_body["error"] == "unauthorized"
    assert api.get(f"/api/tasks/{task['id']}").json_body == task


@pytest.mark.parametrize(
    ("setup", "action", "message"),
    [
        (["pause"], "pause", "The task is paused; only a scheduled or running task pauses."),
        ([], "resume", "The task is running; only a paused task resumes."),
        (["cancel"], "pause", "The task is cancelled; only a scheduled or running task pauses."),
        (["cancel"], "resume", "The task is cancelled; only a paused task resumes."),
        (["cancel"], "cancel", "The task is cancelled; it can no longer be cancelled."),
        (["pause", "cancel"], "resume", "The task is cancelled; only a paused task resumes."),
        (["end"], "pause", "The task is finished; only a scheduled or running task pauses."),
        (["end"], "resume", "The task is finished; only a paused task resumes."),
        (["end"], "cancel", "The task is finished; it can no longer be cancelled."),
        (["pause", "end"], "resume", "The task is finished; only a paused task resumes."),
        (["pause", "end"], "cancel", "The task is finished; it can no longer be cancelled."),
    ],
)
def test_a_refused_control_is_409_and_changes_nothing(
    api: Api,
    pipeline: Pipeline,
    clock: FrozenClock,
    setup: list[str],
    action: str,
    message: str,
) -> None:
    task = add_task(api)
    for step in setup:
        if step == "end":
            clock.advance(hours=2, minutes=1)
            pipeline.tick()
        else:
            control(api, task["id"], step)
    before = api.get(f"/api/tasks/{task['id']}").json_body
    clock.advance(seconds=1)
    body = control(api, task["id"], action, 409)
    assert_error(body, "conflict")
    assert body["message"] == message
    assert api.get(f"/api/tasks/{task['id']}").json_body == before


# --- pause and resume in the middle of a mailing ----------------------------------------


def test_a_paused_mailing_calls_no_one_until_resumed_then_sends_the_rest_once(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    task = mid_mailing(api, pipeline, provider)
    control(api, task["id"], "pause")
    calls = list(provider.sends())
    frozen = counts(task["id"])
    assert frozen["sent"] == 2 and frozen["pending"] > 0
    report = pipeline.drain()  # the jobs queued before the pause hold their messages
    assert report.outcomes["held"] == frozen["pending"]
    run_everything(pipeline, clock, rounds=4)
    assert provider.sends() == calls  # no provider call after the answer
    assert counts(task["id"]) == frozen == recount(task["id"])
    assert status_of(api, task["id"]) == "paused"
    assert stats(api, task["id"])["task"]["status"] == "paused"

    assert control(api, task["id"], "resume")["status"] == "running"
    run_everything(pipeline, clock)
    accepted = sent_ids(provider)
    assert not [i for i, n in Counter(accepted).items() if n > 1]  # no msgId twice
    assert sorted(accepted) == sorted(message_id(task["id"], c) for c in range(1, AUDIENCE + 1))
    done = {**ZERO_COUNTS, "total": AUDIENCE, "sent": AUDIENCE}
    assert counts(task["id"]) == recount(task["id"]) == done
    assert status_of(api, task["id"]) == "finished"


def test_a_paused_mailing_whose_end_passes_expires_its_pending_messages_and_finishes(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    task = mid_mailing(api, pipeline, provider)
    control(api, task["id"], "pause")
    run_everything(pipeline, clock)
    calls = list(provider.sends())
    pending = counts(task["id"])["pending"]
    assert pending
    clock.advance(hours=2)  # past 14:00, the end
    run_everything(pipeline, clock)
    assert provider.sends() == calls
    found = counts(task["id"])
    assert found == recount(task["id"])
    assert found == {**ZERO_COUNTS, "total": 2 + pending, "sent": 2, "expired": pending}
    assert status_of(api, task["id"]) == "finished"
    assert_error(control(api, task["id"], "resume", 409), "conflict")
    assert status_of(api, task["id"]) == "finished"


# --- cancel -----------------------------------------------------------------------------


def test_a_cancelled_mailing_stops_for_good_and_keeps_its_statistics(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    task = mid_mailing(api, pipeline, provider)
    pending = counts(task["id"])["pending"]
    assert pending
    control(api, task["id"], "cancel")
    calls = list(provider.sends())
    run_everything(pipeline, clock)
    assert provider.sends() == calls  # no provider call after the answer

    expected = {**ZERO_COUNTS, "total": 2 + pending, "sent": 2, "cancelled": pending}
    assert counts(task["id"]) == recount(task["id"]) == expected
    detail = stats(api, task["id"])
    assert detail["task"]["status"] == "cancelled"
    assert detail["total"] == 2 + pending
    assert detail["messages"] == {k: v for k, v in expected.items() if k != "total"}
    cancelled = api.get(f"/api/tasks/{task['id']}/stats?status=cancelled").json_body["items"]
    assert len(cancelled) == pending
    assert {m["status"] for m in cancelled} == {"cancelled"}
    overview = {t["id"]: t for t in api.get("/api/tasks/stats").json_body["items"]}
    assert overview[task["id"]]["status"] == "cancelled"
    assert overview[task["id"]]["messages"] == detail["messages"]

    listed = {t["id"]: t for t in api.get("/api/tasks/").json_body["items"]}
    assert listed[task["id"]]["status"] == "cancelled"
    clock.advance(hours=3)  # its end passes: it stays cancelled
    pipeline.tick()
    assert status_of(api, task["id"]) == "cancelled"
    for action in CONTROLS:
        assert_error(control(api, task["id"], action, 409), "conflict")


@pytest.mark.parametrize(
    "change",
    [{"end_time": "2026-11-28T15:00:00Z"}, {"text": "Other"}, {"send_window": None}],
)
def test_a_cancelled_task_cannot_be_updated(api: Api, change: dict[str, Any]) -> None:
    task = control(api, add_task(api, start_time=FUTURE_START)["id"], "cancel")
    response = api.patch(f"/api/tasks/{task['id']}", change)
    assert response.status_code == 409, response.body
    assert_error(response.json_body, "conflict")
    assert api.get(f"/api/tasks/{task['id']}").json_body == task


def test_a_paused_task_changes_by_the_rules_of_its_times(api: Api, clock: FrozenClock) -> None:
    scheduled = control(api, add_task(api, start_time=FUTURE_START)["id"], "pause")
    response = api.patch(f"/api/tasks/{scheduled['id']}", {"text": "New text"})
    assert response.status_code == 200, response.body
    assert response.json_body["text"] == "New text"
    assert response.json_body["status"] == "paused"

    running = control(api, add_task(api)["id"], "pause")
    refused = api.patch(f"/api/tasks/{running['id']}", {"text": "New text"})
    assert refused.status_code == 409, refused.body
    assert_error(refused.json_body, "conflict")
    moved = api.patch(f"/api/tasks/{running['id']}", {"end_time": "2026-11-28T16:00:00Z"})
    assert moved.status_code == 200, moved.body
    assert moved.json_body["end_time"] == "2026-11-28T16:00:00Z"
    assert moved.json_body["status"] == "paused"


# --- the stop list ----------------------------------------------------------------------


def stop(api: Api, phone: str) -> None:
    response = api.post("/api/stoplist/", {"phone": phone, "reason": "asked"})
    assert response.status_code == 201, response.body


def phone_of(n: int) -> str:
    return f"7{9000000000 + n}"  # add_client's phones


def test_a_stopped_phone_is_suppressed_and_never_called(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    clients = [add_client(api, n) for n in range(3)]
    stop(api, phone_of(1))
    task = add_task(api)
    run_everything(pipeline, clock)
    assert sorted(sent_ids(provider)) == sorted(
        message_id(task["id"], c) for c in (clients[0], clients[2])
    )
    assert {call.msg_id for call in provider.sends()} == set(sent_ids(provider))
    assert messages_of(task["id"])[clients[1]].status == "suppressed"
    expected = {**ZERO_COUNTS, "total": 3, "sent": 2, "suppressed": 1}
    assert counts(task["id"]) == recount(task["id"]) == expected
    assert stats(api, task["id"])["messages"]["suppressed"] == 1


def test_a_phone_stopped_after_its_job_was_queued_is_suppressed(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    client = add_client(api, 1)
    task = add_task(api)
    assert pipeline.depth() == 1  # its job is queued already
    assert messages_of(task["id"])[client].status == "pending"
    stop(api, phone_of(1))
    run_everything(pipeline, clock)
    assert provider.sends() == []
    assert messages_of(task["id"])[client].status == "suppressed"
    assert status_of(api, task["id"]) == "finished"


def test_the_stop_entry_outlives_its_client_and_stops_a_new_one(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    client = add_client(api, 1)
    stop(api, phone_of(1))
    assert api.delete(f"/api/clients/{client}").status_code == 204
    assert [e["phone"] for e in api.get("/api/stoplist/").json_body["items"]] == [phone_of(1)]
    again = add_client(api, 1)  # the same phone, a new client
    task = add_task(api)
    run_everything(pipeline, clock)
    assert provider.sends() == []
    assert messages_of(task["id"])[again].status == "suppressed"


def test_metrics_count_suppressed_and_cancelled_messages_and_cancelled_tasks(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    cancelled = mid_mailing(api, pipeline, provider)
    control(api, cancelled["id"], "cancel")
    pending = counts(cancelled["id"])["cancelled"]
    stop(api, phone_of(0))
    stopped = add_task(api, filter={"codes": ["900"]})
    run_everything(pipeline, clock)
    assert messages_of(stopped["id"])[1].status == "suppressed"
    paused = control(api, add_task(api, start_time=FUTURE_START)["id"], "pause")
    assert paused["status"] == "paused"

    response = api.get("/api/metrics")
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.body.decode())}
    messages = {s.labels["status"]: s.value for s in families["notify_messages"].samples}
    assert messages["cancelled"] == pending
    assert messages["suppressed"] == 1
    assert messages["sent"] == 2 + AUDIENCE - 1
    tasks = {s.labels["status"]: s.value for s in families["notify_tasks"].samples}
    assert tasks == {"scheduled": 0, "running": 0, "finished": 1, "paused": 1, "cancelled": 1}


def test_a_resumed_task_with_nothing_left_to_send_is_finished(
    api: Api, pipeline: Pipeline, provider: FakeProviderState
) -> None:
    """SPEC: resume answers the task "back to scheduled, running or finished, as its
    times and messages say": every message of it final, it is finished."""
    client = add_client(api, 1)
    task = add_task(api)
    pipeline.drain()  # sent; no dispatcher run has finished the task yet
    assert sent_ids(provider) == [message_id(task["id"], client)]
    control(api, task["id"], "pause")
    assert control(api, task["id"], "resume")["status"] == "finished"
    assert status_of(api, task["id"]) == "finished"


def test_a_task_paused_before_its_start_sends_nothing_until_resumed(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    clients = [add_client(api, n) for n in range(7)]
    task = add_task(api, start_time=FUTURE_START)
    control(api, task["id"], "pause")
    clock.advance(hours=1)  # 13:00, its start, while paused
    run_everything(pipeline, clock)
    assert provider.sends() == []
    assert messages_of(task["id"]) == {}  # no fan-out while paused
    assert status_of(api, task["id"]) == "paused"
    assert control(api, task["id"], "resume")["status"] == "running"
    run_everything(pipeline, clock)
    assert sorted(sent_ids(provider)) == sorted(message_id(task["id"], c) for c in clients)
    assert counts(task["id"]) == {**ZERO_COUNTS, "total": 7, "sent": 7}
    assert status_of(api, task["id"]) == "finished"


def test_a_paused_mailing_given_a_later_end_sends_the_rest_when_resumed(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    task = mid_mailing(api, pipeline, provider)
    control(api, task["id"], "pause")
    run_everything(pipeline, clock)
    moved = api.patch(f"/api/tasks/{task['id']}", {"end_time": "2026-11-28T18:00:00Z"})
    assert moved.status_code == 200, moved.body
    assert moved.json_body["status"] == "paused"
    clock.advance(hours=2, minutes=30)  # past the old end (14:00), before the new one
    run_everything(pipeline, clock)
    assert len(provider.sends()) == 2
    assert status_of(api, task["id"]) == "paused"
    assert control(api, task["id"], "resume")["status"] == "running"
    run_everything(pipeline, clock)
    accepted = sent_ids(provider)
    assert sorted(accepted) == sorted(message_id(task["id"], c) for c in range(1, AUDIENCE + 1))
    assert counts(task["id"]) == {**ZERO_COUNTS, "total": AUDIENCE, "sent": AUDIENCE}
