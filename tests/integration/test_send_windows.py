"""Send windows in each client's local time (SPEC rule 7), on a frozen clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.domain.messages import message_id
from local.fake_provider import FakeProviderState
from tests.conftest import Api, FrozenClock
from tests.integration.pipeline import Pipeline, messages_of
from tests.integration.test_pipeline import add_client, sent_ids

DAYTIME = {"from": "09:00", "to": "21:00"}


@pytest.fixture
def pipeline(services: Any, api: Api) -> Pipeline:
    return Pipeline(services)


def at(clock: FrozenClock, text: str) -> None:
    clock.now = datetime.fromisoformat(text).replace(tzinfo=UTC)


def start_task(api: Api, clock: FrozenClock, end: str, window: dict[str, str] | None) -> int:
    body = {
        "start_time": clock().isoformat(),
        "end_time": end,
        "text": "Good morning",
        "send_window": window,
    }
    response = api.post("/api/tasks/", body)
    assert response.status_code == 201, response.body
    return int(response.json_body["id"])


def run(pipeline: Pipeline) -> None:
    pipeline.tick()
    pipeline.drain()


def test_moscow_is_sent_while_vladivostok_waits_for_its_morning(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    at(clock, "2026-11-28T12:30:00")  # 15:30 in Moscow, 22:30 in Vladivostok
    moscow = add_client(api, 1, utc="Europe/Moscow")
    vladivostok = add_client(api, 2, utc="Asia/Vladivostok")
    task = start_task(api, clock, "2026-11-29T12:00:00Z", DAYTIME)
    run(pipeline)
    assert sent_ids(provider) == [message_id(task, moscow)]
    waiting = messages_of(task)[vladivostok]
    assert waiting.status == "pending"
    assert waiting.wake_ms is not None  # parked, no job cycling in the queue meanwhile
    assert pipeline.depth() == 0

    at(clock, "2026-11-28T22:59:00")  # 08:59 in Vladivostok
    run(pipeline)
    assert len(provider.sends()) == 1
    at(clock, "2026-11-28T23:00:00")  # 09:00 in Vladivostok
    run(pipeline)
    assert sorted(sent_ids(provider)) == sorted(
        [message_id(task, moscow), message_id(task, vladivostok)]
    )


def test_window_crossing_midnight(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    at(clock, "2026-11-28T12:00:00")
    client = add_client(api, 1, utc="UTC")
    task = start_task(api, clock, "2026-11-29T12:00:00Z", {"from": "21:00", "to": "09:00"})
    run(pipeline)
    assert provider.sends() == []
    at(clock, "2026-11-28T21:00:00")
    run(pipeline)
    assert sent_ids(provider) == [message_id(task, client)]


def test_daylight_saving_day_in_new_york(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    # 2026-03-08: 02:00 EST becomes 03:00 EDT; 09:00 local is 13:00 UTC that day.
    at(clock, "2026-03-08T05:00:00")  # 00:00 EST
    client = add_client(api, 1, utc="America/New_York")
    task = start_task(api, clock, "2026-03-09T00:00:00Z", DAYTIME)
    run(pipeline)
    at(clock, "2026-03-08T12:59:00")  # 08:59 EDT (it would be 07:59 EST)
    run(pipeline)
    assert provider.sends() == []
    at(clock, "2026-03-08T13:00:00")  # 09:00 EDT
    run(pipeline)
    assert sent_ids(provider) == [message_id(task, client)]


def test_fixed_offset_client(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    at(clock, "2026-11-28T02:00:00")  # 07:30 at +05:30
    client = add_client(api, 1, utc="+05:30")
    task = start_task(api, clock, "2026-11-28T20:00:00Z", DAYTIME)
    run(pipeline)
    assert provider.sends() == []
    at(clock, "2026-11-28T03:30:00")  # 09:00 at +05:30
    run(pipeline)
    assert sent_ids(provider) == [message_id(task, client)]


def test_a_short_wait_uses_a_queue_delay_not_the_parking(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    at(clock, "2026-11-28T08:50:00")  # ten minutes before 09:00 UTC
    client = add_client(api, 1, utc="UTC")
    task = start_task(api, clock, "2026-11-28T20:00:00Z", DAYTIME)
    report = pipeline.drain()
    assert report.outcomes["deferred"] >= 1
    assert report.outcomes["parked"] == 0
    waiting = messages_of(task)[client]
    # A delayed job carries it; the wake time only stands in if that job is lost.
    assert waiting.phase == "window_wait"
    assert waiting.not_before_ms == int(datetime(2026, 11, 28, 9, tzinfo=UTC).timestamp() * 1000)
    assert waiting.wake_ms > waiting.not_before_ms
    at(clock, "2026-11-28T09:00:00")
    pipeline.drain()
    assert sent_ids(provider) == [message_id(task, client)]


def test_window_that_opens_after_the_end_expires_without_a_call(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    at(clock, "2026-11-28T12:30:00")  # 22:30 in Vladivostok; its window opens at 23:00 UTC
    client = add_client(api, 1, utc="Asia/Vladivostok")
    task = start_task(api, clock, "2026-11-28T20:00:00Z", DAYTIME)
    report = pipeline.drain()
    assert report.outcomes["set_aside"] == 1
    at(clock, "2026-11-28T20:01:00")
    run(pipeline)
    assert messages_of(task)[client].status == "expired"
    assert provider.sends() == []
    assert api.get(f"/api/tasks/{task}/stats").json_body["messages"]["expired"] == 1


def test_changing_the_window_of_a_running_task_applies_to_waiting_messages(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, clock: FrozenClock
) -> None:
    at(clock, "2026-11-28T12:30:00")
    client = add_client(api, 1, utc="Asia/Vladivostok")  # 22:30 local: outside 09-21
    task = start_task(api, clock, "2026-11-29T12:00:00Z", DAYTIME)
    run(pipeline)
    assert provider.sends() == []
    response = api.patch(f"/api/tasks/{task}", {"send_window": {"from": "08:00", "to": "23:00"}})
    assert response.status_code == 200
    pipeline.drain()
    assert sent_ids(provider) == [message_id(task, client)]
