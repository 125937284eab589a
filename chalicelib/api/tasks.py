"""Mailing tasks: their routes, their OpenAPI description, and the HTTP edge's mapping
from request models to domain values and from domain values to answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalice.app import Blueprint, Response

from chalicelib import http
from chalicelib.api.auth import PROTECTED
from chalicelib.api.operation import CHANGED_MEANWHILE, PAGED, Operation
from chalicelib.bootstrap import services
from chalicelib.domain.tasks import (
    KEEP,
    Control,
    SendWindow,
    Task,
    TaskChanges,
    TaskPlan,
    format_hhmm,
    format_instant,
)
from chalicelib.schemas import (
    FilterOut,
    ProcessReport,
    SendWindowIn,
    SendWindowOut,
    TaskCreate,
    TaskOut,
    TaskUpdate,
    parse,
)
from chalicelib.schemas import Page as PageOut

# For the type checker only: the modules behind them import boto3, which the app's
# import (every function's cold start) should not pay for here (see bootstrap.py).
if TYPE_CHECKING:
    from chalicelib.ports import Page

bp = Blueprint(__name__)

TASK_IN = {
    "start_time": "2027-03-01T09:00:00+03:00",
    "end_time": "2027-03-01T21:00:00+03:00",
    "text": "Spring sale: 20% off until Sunday",
    "filter": {"codes": ["900"], "tags": ["vip"]},
    "send_window": {"from": "09:00", "to": "21:00"},
    "rate_limit": 50,
}
TASK = {
    "id": 1,
    "start_time": "2027-03-01T06:00:00Z",
    "end_time": "2027-03-01T18:00:00Z",
    "text": TASK_IN["text"],
    "filter": TASK_IN["filter"],
    "send_window": TASK_IN["send_window"],
    "rate_limit": TASK_IN["rate_limit"],
    "status": "scheduled",
    "created_at": "2026-11-28T12:00:00Z",
    "updated_at": "2026-11-28T12:00:00Z",
}
NEXT = "eyJpZCI6eyJOIjoiMSJ9fQ"  # an example page cursor


@bp.route("/api/tasks", methods=["POST"], **PROTECTED)
@Operation(
    "Create a mailing task",
    "tasks",
    "A task whose start has come starts sending at once (status `running`); one in "
    "the future starts by itself at its start time. `end_time` must be after "
    "`start_time` and in the future. Times need an offset or `Z` and are answered "
    "in UTC.",
    body=TaskCreate,
    body_examples={
        "everything": TASK_IN,
        "every client, no window": {
            "start_time": "2027-03-08T10:00:00Z",
            "end_time": "2027-03-08T20:00:00Z",
            "text": "Happy holidays!",
        },
    },
    status=201,
    answer=TaskOut,
    answer_example=TASK,
)
@http.endpoint
def create_task() -> Response:
    data = parse(TaskCreate, http.json_body(bp.current_request))
    task = services().tasks.create(plan(data))
    return http.ok(task_out(task), status=201)


@bp.route("/api/tasks", methods=["GET"], **PROTECTED)
@Operation(
    "List mailing tasks",
    "tasks",
    "Every task that was not deleted, a page at a time.",
    query=PAGED,
    answer=PageOut[TaskOut],
    answer_example={"items": [TASK], "next": NEXT},
)
@http.endpoint
def list_tasks() -> Response:
    params = http.query(bp.current_request, PAGED)
    page = services().tasks.list(limit=http.page_limit(params), cursor=params.get("cursor"))
    return http.ok(page_out(page))


@bp.route("/api/tasks/{task_id}", methods=["GET"], **PROTECTED)
@Operation("Read a mailing task", "tasks", answer=TaskOut, answer_example=TASK)
@http.endpoint
def get_task(task_id: str) -> Response:
    task = services().tasks.get(http.path_id(task_id, "Task"))
    return http.ok(task_out(task))


@bp.route("/api/tasks/{task_id}", methods=["POST", "PATCH"], **PROTECTED)
@Operation(
    "Change a mailing task",
    "tasks",
    "Before the start any field may change; while running only `end_time`, "
    "`send_window` and `rate_limit`; a finished or cancelled task cannot change (a paused "
    "one changes as its times say).",
    main_note="`send_window: null` removes the window, `rate_limit: null` the task's cap.",
    alias="POST",
    body=TaskUpdate,
    body_examples={
        "later end": {"end_time": "2027-03-02T21:00:00+03:00"},
        "no window": {"send_window": None},
        "other audience": {"filter": {"codes": ["900", "901"]}},
        "slower": {"rate_limit": 20},
    },
    answer=TaskOut,
    answer_example={**TASK, "end_time": "2027-03-02T18:00:00Z"},
    conflict="The task is running and the change touches more than `end_time`, "
    f"`send_window` and `rate_limit`, or it has finished or was cancelled; or it was "
    f"{CHANGED_MEANWHILE}.",
    conflict_example="The task is running: only end_time, send_window and rate_limit may "
    "change (refused: text).",
)
@http.endpoint
def update_task(task_id: str) -> Response:
    target = http.path_id(task_id, "Task")
    data = parse(TaskUpdate, http.json_body(bp.current_request))
    task = services().tasks.update(target, changes(data))
    return http.ok(task_out(task))


@bp.route("/api/tasks/{task_id}", methods=["DELETE"], **PROTECTED)
@Operation(
    "Delete (stop) a mailing task",
    "tasks",
    "No provider call for the task starts after this answer, and the task is gone with "
    "its statistics (`POST /api/tasks/{task_id}/cancel` stops it and keeps them).",
    status=204,
    answer_description="Deleted and stopped; the answer has no body.",
)
@http.endpoint
def delete_task(task_id: str) -> Response:
    services().tasks.delete(http.path_id(task_id, "Task"))
    return http.ok(None, status=204)


@bp.route("/api/tasks/{task_id}/pause", methods=["POST"], **PROTECTED)
@Operation(
    "Pause a mailing task",
    "tasks",
    "A scheduled or running task becomes `paused`: no provider call for it starts after "
    "this answer, and its fan-out stops where it is. Its end still applies: at the end its "
    "pending messages expire, paused or not, and it is `finished`. The answer has no body "
    "to read; any body is ignored.",
    answer=TaskOut,
    answer_example={**TASK, "status": "paused"},
    conflict=f"The task is finished, cancelled or paused already; or it was {CHANGED_MEANWHILE}.",
    conflict_example="The task is finished; only a scheduled or running task pauses.",
)
@http.endpoint
def pause_task(task_id: str) -> Response:
    task = services().tasks.control(http.path_id(task_id, "Task"), Control.PAUSE)
    return http.ok(task_out(task))


@bp.route("/api/tasks/{task_id}/resume", methods=["POST"], **PROTECTED)
@Operation(
    "Resume a paused mailing task",
    "tasks",
    "Back to `scheduled`, `running` or `finished`, as its times and messages say: it "
    "carries on where it stopped (its fan-out included), no message twice. Any body is "
    "ignored.",
    answer=TaskOut,
    answer_example={**TASK, "status": "running"},
    conflict=f"The task is not paused; or it was {CHANGED_MEANWHILE}.",
    conflict_example="The task is running; only a paused task resumes.",
)
@http.endpoint
def resume_task(task_id: str) -> Response:
    task = services().tasks.control(http.path_id(task_id, "Task"), Control.RESUME)
    return http.ok(task_out(task))


@bp.route("/api/tasks/{task_id}/cancel", methods=["POST"], **PROTECTED)
@Operation(
    "Cancel a mailing task",
    "tasks",
    "Stops the task for good and keeps it with its statistics: no provider call for it "
    "starts after this answer; its pending messages become `cancelled` (the counts "
    "follow within seconds). Any body is ignored.",
    answer=TaskOut,
    answer_example={**TASK, "status": "cancelled"},
    conflict=f"The task is finished or cancelled already; or it was {CHANGED_MEANWHILE}.",
    conflict_example="The task is finished; it can no longer be cancelled.",
)
@http.endpoint
def cancel_task(task_id: str) -> Response:
    task = services().tasks.control(http.path_id(task_id, "Task"), Control.CANCEL)
    return http.ok(task_out(task))


@bp.route("/api/tasks/process", methods=["POST"], **PROTECTED)
@Operation(
    "Process due tasks now",
    "tasks",
    "Does now what the schedule does every minute: starts due tasks, queues their "
    "messages, expires and finishes tasks. Answers before any message is sent.",
    status=202,
    answer=ProcessReport,
    answer_example={"tasks": 1, "enqueued": 3, "finished": 0},
)
@http.endpoint
def process_due_tasks() -> Response:
    """SPEC 31: what the schedule does, now; answers before any message is sent."""
    wired = services()
    report = wired.dispatcher.dispatch_due(wired.settings.api_dispatch_budget_seconds, wait=False)
    return http.ok(
        ProcessReport(tasks=report.tasks, enqueued=report.enqueued, finished=report.finished),
        status=202,
    )


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
        rate_limit=data.rate_limit,
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
        rate_limit=data.rate_limit if "rate_limit" in given else KEEP,
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
        rate_limit=task.rate_limit,
        status=task.status,
        created_at=format_instant(task.created_at),
        updated_at=format_instant(task.updated_at),
    )


def page_out(page: Page[Task]) -> PageOut[TaskOut]:
    return PageOut[TaskOut](items=[task_out(task) for task in page.items], next=page.next)
