"""Mailing tasks at the HTTP edge."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalicelib.domain.tasks import (
    KEEP,
    SendWindow,
    Task,
    TaskChanges,
    TaskPlan,
    format_hhmm,
    format_instant,
)
from chalicelib.schemas import (
    FilterOut,
    SendWindowIn,
    SendWindowOut,
    TaskCreate,
    TaskOut,
    TaskUpdate,
)
from chalicelib.schemas import Page as PageOut

# For the type checker only: the modules behind them import boto3, which the app's
# import (every function's cold start) should not pay for here (see bootstrap.py).
if TYPE_CHECKING:
    from chalicelib.ports import Page


def _window(data: SendWindowIn | None) -> SendWindow | None:
    return SendWindow.parse(data.start, data.end) if data is not None else None


def plan(data: TaskCreate) -> TaskPlan:
    return TaskPlan(
        start=data.start_time,
        end=data.end_time,
        text=data.text,
        codes=tuple(data.filter.codes),
        tags=tuple(data.filter.tags),
        window=_window(data.send_window),
    )


def changes(data: TaskUpdate) -> TaskChanges:
    """Fields left out keep their value; ``send_window: null`` removes the window."""
    given = data.model_fields_set
    task_filter = data.filter
    return TaskChanges(
        start=data.start_time,
        end=data.end_time,
        text=data.text,
        codes=tuple(task_filter.codes) if task_filter is not None else None,
        tags=tuple(task_filter.tags) if task_filter is not None else None,
        window=_window(data.send_window) if "send_window" in given else KEEP,
    )


def task_out(task: Task) -> TaskOut:
    window = None
    if task.window is not None:
        window = SendWindowOut.model_validate(
            {"from": format_hhmm(task.window.start), "to": format_hhmm(task.window.end)}
        )
    return TaskOut(
        id=task.id,
        start_time=format_instant(task.start),
        end_time=format_instant(task.end),
        text=task.text,
        filter=FilterOut(codes=list(task.codes), tags=list(task.tags)),
        send_window=window,
        status=task.status,
        created_at=format_instant(task.created_at),
        updated_at=format_instant(task.updated_at),
    )


def page_out(page: Page[Task]) -> PageOut[TaskOut]:
    return PageOut[TaskOut](items=[task_out(task) for task in page.items], next=page.next)
