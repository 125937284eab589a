"""Task lifecycle and field rules (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from chalicelib.domain.tasks import (
    SendWindow,
    TaskStatus,
    check_update_allowed,
    effective_status,
    format_instant,
    parse_instant,
)
from chalicelib.errors import Conflict, ValidationFailed
from chalicelib.schemas import TaskCreate, TaskUpdate, parse

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
START = NOW + timedelta(hours=1)
END = NOW + timedelta(hours=2)
VALID = {"start_time": "2026-11-28T13:00:00Z", "end_time": "2026-11-28T14:00:00Z", "text": "Hi"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28T13:00:00Z", datetime(2026, 11, 28, 13, tzinfo=UTC)),
        ("2026-11-28T16:00:00+03:00", datetime(2026, 11, 28, 13, tzinfo=UTC)),
        ("2026-11-28T08:00:00-05:00", datetime(2026, 11, 28, 13, tzinfo=UTC)),
        ("2026-11-28T13:00:00.250Z", datetime(2026, 11, 28, 13, 0, 0, 250000, tzinfo=UTC)),
    ],
)
def test_instants_with_offsets_become_utc(text: str, expected: datetime) -> None:
    assert parse_instant(text) == expected


@pytest.mark.parametrize("text", ["2026-11-28T13:00:00", "2026-11-28", "tomorrow", "13:00Z", ""])
def test_naive_or_malformed_instants_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_instant(text)


def test_instants_are_answered_in_utc_with_z() -> None:
    assert format_instant(datetime(2026, 11, 28, 13, tzinfo=UTC)) == "2026-11-28T13:00:00Z"


@pytest.mark.parametrize(
    ("now", "stored", "expected"),
    [
        (NOW, TaskStatus.SCHEDULED, TaskStatus.SCHEDULED),
        (START, TaskStatus.SCHEDULED, TaskStatus.RUNNING),
        (START + timedelta(minutes=5), TaskStatus.RUNNING, TaskStatus.RUNNING),
        (END, TaskStatus.RUNNING, TaskStatus.FINISHED),
        (START + timedelta(minutes=5), TaskStatus.FINISHED, TaskStatus.FINISHED),
    ],
)
def test_effective_status(now: datetime, stored: TaskStatus, expected: TaskStatus) -> None:
    assert effective_status(stored, START, END, now) is expected


def test_update_rules_by_status() -> None:
    check_update_allowed(TaskStatus.SCHEDULED, {"text", "filter", "start_time", "end_time"})
    check_update_allowed(TaskStatus.RUNNING, {"end_time", "send_window"})
    check_update_allowed(TaskStatus.RUNNING, set())
    with pytest.raises(Conflict, match="text"):
        check_update_allowed(TaskStatus.RUNNING, {"text", "end_time"})
    with pytest.raises(Conflict):
        check_update_allowed(TaskStatus.FINISHED, {"end_time"})
    with pytest.raises(Conflict):
        check_update_allowed(TaskStatus.FINISHED, set())


def test_send_window_parsing() -> None:
    window = SendWindow.parse("21:00", "09:00")
    assert window == SendWindow(time(21), time(9))


def fields_of(model: type, payload: object) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as caught:
        parse(model, payload)
    assert caught.value.fields is not None
    return caught.value.fields


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"start_time": "2026-11-28T13:00:00"}, "start_time"),
        ({"end_time": "2026-11-28T12:30:00Z"}, "end_time"),
        ({"end_time": "2026-11-28T13:00:00Z"}, "end_time"),
        ({"start_time": 1764334800}, "start_time"),
        ({"text": ""}, "text"),
        ({"text": "x" * 4097}, "text"),
        ({"text": 5}, "text"),
        ({"filter": {"codes": [""]}}, "filter.codes.0"),
        ({"filter": {"tags": ["t"] * 101}}, "filter.tags"),
        ({"filter": {"codes": "900"}}, "filter.codes"),
        ({"filter": {"operator": ["900"]}}, "filter.operator"),
        ({"filter": []}, "filter"),
        ({"send_window": {"from": "09:00", "to": "09:00"}}, "send_window"),
        ({"send_window": {"from": "9:00", "to": "21:00"}}, "send_window.from"),
        ({"send_window": {"from": "09:00", "to": "24:00"}}, "send_window.to"),
        ({"send_window": {"from": "09:00"}}, "send_window.to"),
        ({"send_window": {"from": "09:00", "to": "21:00", "tz": "UTC"}}, "send_window.tz"),
        ({"status": "running"}, "status"),
    ],
)
def test_each_bad_task_field_is_named(change: dict[str, object], field: str) -> None:
    assert field in fields_of(TaskCreate, {**VALID, **change})


def test_valid_task_with_everything() -> None:
    parsed = parse(
        TaskCreate,
        {
            **VALID,
            "text": "x" * 4096,
            "filter": {"codes": ["900"] * 100, "tags": ["vip"]},
            "send_window": {"from": "21:00", "to": "09:00"},
        },
    )
    assert parsed.send_window is not None
    assert parsed.send_window.start == "21:00"


def test_missing_fields_are_named() -> None:
    assert set(fields_of(TaskCreate, {})) == {"start_time", "end_time", "text"}


def test_update_accepts_null_window_but_no_other_null() -> None:
    assert parse(TaskUpdate, {"send_window": None}).model_dump(exclude_unset=True) == {
        "send_window": None
    }
    assert fields_of(TaskUpdate, {"text": None}) == {"text": "must not be null"}
