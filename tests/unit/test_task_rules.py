"""Task lifecycle and field rules (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

import pytest

from chalicelib.domain.tasks import (
    SendWindow,
    TaskChanges,
    TaskPlan,
    TaskStatus,
    changed_fields,
    check_times,
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
    check_update_allowed(TaskStatus.SCHEDULED, {"text", "codes", "tags", "start", "end"})
    check_update_allowed(TaskStatus.RUNNING, {"end", "window"})
    check_update_allowed(TaskStatus.RUNNING, set())
    with pytest.raises(Conflict, match=r"\(refused: filter, text\)"):
        check_update_allowed(TaskStatus.RUNNING, {"text", "codes", "tags", "end"})
    with pytest.raises(Conflict):
        check_update_allowed(TaskStatus.FINISHED, {"end"})
    with pytest.raises(Conflict):
        check_update_allowed(TaskStatus.FINISHED, set())


PLAN = TaskPlan(start=START, end=END, text="Hi", codes=(), tags=(), window=None)


def time_errors(plan: TaskPlan, moved: tuple[str, ...] = ("start", "end")) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as caught:
        check_times(plan, NOW, moved=moved)
    assert caught.value.fields is not None
    return caught.value.fields


def test_a_task_ends_after_it_starts_and_in_the_future() -> None:
    check_times(PLAN, NOW)
    assert time_errors(replace(PLAN, end=START)) == {"end_time": "must be after start_time"}
    assert time_errors(replace(PLAN, end=NOW - timedelta(hours=1))) == {
        "end_time": "must be after start_time"  # the first rule that fails is named
    }
    past = replace(PLAN, start=NOW - timedelta(hours=2), end=NOW)
    assert time_errors(past) == {"end_time": "must be in the future"}


def test_a_time_clash_names_the_field_the_change_set() -> None:
    late_start = replace(PLAN, start=END)
    assert time_errors(late_start, ("start",)) == {"start_time": "must be before end_time"}
    assert time_errors(late_start, ("start", "end")) == {"end_time": "must be after start_time"}
    # An end already past is no error when the change leaves the end alone.
    check_times(replace(PLAN, start=NOW - timedelta(hours=3), end=NOW), NOW, moved=("text",))


def test_changes_apply_to_the_plan_alone() -> None:
    window = SendWindow(time(9), time(21))
    plan = replace(PLAN, codes=("900",), window=window)
    assert TaskChanges().applied_to(plan) == plan
    assert TaskChanges(window=None).applied_to(plan) == replace(plan, window=None)
    changed = TaskChanges(text="New", codes=("901", "901", "900"), tags=()).applied_to(plan)
    assert changed == replace(plan, text="New", codes=("901", "900"))
    assert changed_fields(plan, changed) == ["text", "codes"]


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
