"""A mailing task: what it is, its lifecycle, and what may change when."""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, time

from chalicelib.errors import Conflict, ValidationFailed

TEXT_MAX = 4096
FILTER_MAX_ITEMS = 100
_HHMM_RE = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


class TaskStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    FINISHED = "finished"
    PAUSED = "paused"  # an operator paused it; its end still applies
    CANCELLED = "cancelled"  # stopped for good, kept with its statistics


class Control(enum.StrEnum):
    """An operator's action on a task (SPEC: campaign controls)."""

    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"


# While a task runs, only these may change (SPEC: task update rules).
MUTABLE_WHILE_RUNNING = frozenset({"end", "window", "rate_limit"})
# Fields where None is a value (no window, no rate limit), so KEEP leaves them as they are.
NULLABLE = frozenset({"window", "rate_limit"})
RATE_LIMIT_MAX = 10_000
# How a person calls each field of a plan: the API's names, which errors use.
FIELD_NAMES = {
    "start": "start_time",
    "end": "end_time",
    "text": "text",
    "codes": "filter",
    "tags": "filter",
    "window": "send_window",
    "rate_limit": "rate_limit",
}


@dataclass(frozen=True)
class SendWindow:
    """Local-time window ``[start, end)``; ``start > end`` means it crosses midnight."""

    start: time
    end: time

    @classmethod
    def parse(cls, start: str, end: str) -> SendWindow:
        return cls(parse_hhmm(start), parse_hhmm(end))


@dataclass(frozen=True)
class Fanout:
    """A task's fan-out: its segments' plan (``chalicelib/domain/fanout.py``: the highest
    client id at the start and the id ranges per audience part; ``ranks`` 0 until
    planned), and whether every segment is done."""

    done: bool = False
    max_id: int = 0
    ranks: int = 0

    @property
    def planned(self) -> bool:
        return self.ranks > 0


@dataclass(frozen=True)
class TaskPlan:
    """What a mailing is to do: when, what, to whom, in which local hours."""

    start: datetime
    end: datetime
    text: str
    codes: tuple[str, ...]
    tags: tuple[str, ...]
    window: SendWindow | None
    # At most this many of its messages a second go to the provider (None: no cap of
    # its own; SEND_RATE_LIMIT caps all tasks together).
    rate_limit: int | None = field(default=None, kw_only=True)

    def deduplicated(self) -> TaskPlan:
        """The plan alone, with each code and tag once (where it was first given)."""
        return _plan(self, codes=_distinct(self.codes), tags=_distinct(self.tags))


@dataclass(frozen=True)
class Task(TaskPlan):
    """A task as stored: its plan, and what the service assigned and keeps."""

    id: int
    status: TaskStatus
    created_at: datetime
    updated_at: datetime
    # Optimistic lock: the stored version this value was read at (None: stored before
    # versions, and not changed since).
    version: int | None

    def status_at(self, now: datetime) -> TaskStatus:
        return effective_status(self.status, self.start, self.end, now)

    def schedule_at(self, now: datetime) -> TaskStatus:
        """Where its times put it (scheduled, running or finished), paused or not: the
        rules for changing a paused task are those of the status it would have."""
        stored = TaskStatus.SCHEDULED if self.status is TaskStatus.PAUSED else self.status
        return effective_status(stored, self.start, self.end, now)


@dataclass(frozen=True)
class SendingTask(Task):
    """A task as the dispatcher and the sender see it, with the engine's progress."""

    deleted: bool
    fanout: Fanout
    # The window or the end changed while it ran: waiting messages are judged again.
    rejudge: bool
    first_sent: bool
    # When a fan-out page of it was last queued, or its fan-out planned (epoch ms): tasks
    # take turns by it.
    fanout_at_ms: int


class Keep(enum.Enum):
    """The value of a change that leaves the field as it is, where None is a value."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True)
class TaskChanges:
    """A partial update, each value already valid: None (``KEEP`` for the window, where
    None removes it) leaves a field as it is."""

    start: datetime | None = None
    end: datetime | None = None
    text: str | None = None
    codes: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None
    window: SendWindow | Keep | None = KEEP
    rate_limit: int | Keep | None = KEEP

    def applied_to(self, plan: TaskPlan) -> TaskPlan:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        given = {
            name: value
            for name, value in values.items()
            if value is not KEEP and (value is not None or name in NULLABLE)
        }
        return _plan(plan, **given).deduplicated()


def changed_fields(before: TaskPlan, after: TaskPlan) -> list[str]:
    return [f.name for f in fields(TaskPlan) if getattr(before, f.name) != getattr(after, f.name)]


def _plan(value: TaskPlan, **changes: object) -> TaskPlan:
    """The plan part of ``value`` (a task is a plan too), with ``changes``."""
    current = {f.name: getattr(value, f.name) for f in fields(TaskPlan)}
    return TaskPlan(**{**current, **changes})


def _distinct(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def parse_hhmm(value: str) -> time:
    match = _HHMM_RE.fullmatch(value)
    if not match:
        raise ValueError("must be HH:MM (00:00 to 23:59)")
    return time(int(match.group(1)), int(match.group(2)))


def format_hhmm(value: time) -> str:
    return f"{value:%H:%M}"


def parse_instant(value: str) -> datetime:
    """ISO 8601 with an offset or ``Z`` -> aware UTC datetime; naive times are refused."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an ISO 8601 date-time such as 2026-12-01T09:00:00Z") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("must include a time zone offset or Z")
    try:
        # 0001-01-01T00:00+01:00 and 9999-12-31T23:59-01:00 have no UTC form.
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            "is out of range: its UTC time must fall between years 0001 and 9999"
        ) from None


def format_instant(value: datetime) -> str:
    """UTC with ``Z``, to the second unless the value carries a fraction."""
    text = value.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def effective_status(
    stored: TaskStatus, start: datetime, end: datetime, now: datetime
) -> TaskStatus:
    """What the task is now, even if the schedule has not ticked since its start or end.
    A cancelled task stays cancelled; a paused one is finished once its end has passed
    (its pending messages expire at the end, paused or not)."""
    if stored is TaskStatus.CANCELLED:
        return TaskStatus.CANCELLED
    if stored is TaskStatus.FINISHED or now >= end:
        return TaskStatus.FINISHED
    if stored is TaskStatus.PAUSED:
        return TaskStatus.PAUSED
    if now >= start:
        return TaskStatus.RUNNING
    return TaskStatus.SCHEDULED


def check_update_allowed(status: TaskStatus, changed: Iterable[str]) -> None:
    """Raise Conflict when the lifecycle forbids changing these fields of the plan now."""
    changed = set(changed)
    if status is TaskStatus.CANCELLED:
        raise Conflict("The task was cancelled; it can no longer change.")
    if status is TaskStatus.FINISHED:
        raise Conflict("The task has finished; it can no longer change.")
    if status is TaskStatus.RUNNING:
        frozen = sorted({FIELD_NAMES[name] for name in changed - MUTABLE_WHILE_RUNNING})
        if frozen:
            raise Conflict(
                "The task is running: only end_time, send_window and rate_limit may change "
                f"(refused: {', '.join(frozen)})."
            )


def control_target(control: Control, task: Task, now: datetime) -> TaskStatus:
    """The status a control moves the task to (SPEC: campaign controls), or Conflict.

    Pause: a scheduled or running task. Resume: a paused one, back to what its times
    say (the dispatcher finishes it once nothing is pending). Cancel: anything not
    finished or cancelled already, a paused task included."""
    status = task.status_at(now)
    if control is Control.PAUSE:
        if status in (TaskStatus.SCHEDULED, TaskStatus.RUNNING):
            return TaskStatus.PAUSED
        raise Conflict(f"The task is {status.value}; only a scheduled or running task pauses.")
    if control is Control.RESUME:
        if status is TaskStatus.PAUSED:
            return TaskStatus.RUNNING if now >= task.start else TaskStatus.SCHEDULED
        raise Conflict(f"The task is {status.value}; only a paused task resumes.")
    if status in (TaskStatus.FINISHED, TaskStatus.CANCELLED):
        raise Conflict(f"The task is {status.value}; it can no longer be cancelled.")
    return TaskStatus.CANCELLED


def check_times(
    plan: TaskPlan, now: datetime, *, moved: Collection[str] = ("start", "end")
) -> None:
    """SPEC: a task ends after it starts, and an end that is set lies in the future.

    ``moved`` names what the request sets of ``start`` and ``end`` (both for a new task):
    a clash is the fault of the one it sets, an end before the start it keeps or a start
    after the end it keeps.
    """
    if plan.end <= plan.start:
        if "end" in moved:
            raise _invalid("end_time", "must be after start_time")
        raise _invalid("start_time", "must be before end_time")
    if "end" in moved and plan.end <= now:
        raise _invalid("end_time", "must be in the future")


def _invalid(field: str, problem: str) -> ValidationFailed:
    return ValidationFailed("The request has invalid fields.", {field: problem})
