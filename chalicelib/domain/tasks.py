"""Rules of a mailing task: its lifecycle and what may change when."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time

from chalicelib.errors import Conflict

TEXT_MAX = 4096
FILTER_MAX_ITEMS = 100
_HHMM_RE = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


class TaskStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    FINISHED = "finished"


# While a task runs, only these may change (SPEC: task update rules).
MUTABLE_WHILE_RUNNING = frozenset({"end_time", "send_window"})


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
    """Where a task's fan-out stands: which audience part, where in it, and whether done."""

    part: int = 0
    cursor: str | None = None
    done: bool = False


@dataclass(frozen=True)
class SendingTask:
    """A task as the dispatcher and the sender see it: parsed once when read."""

    id: int
    start: datetime
    end: datetime
    text: str
    codes: tuple[str, ...]
    tags: tuple[str, ...]
    window: SendWindow | None
    status: TaskStatus
    deleted: bool
    fanout: Fanout
    # The window or the end changed while it ran: waiting messages are judged again.
    rejudge: bool
    first_sent: bool
    # When a fan-out page of it was last queued (epoch ms): tasks take turns by it.
    fanout_at_ms: int
    # Optimistic lock: the stored ``updated_at`` this view was read at.
    version: datetime


def parse_hhmm(value: str) -> time:
    match = _HHMM_RE.fullmatch(value)
    if not match:
        raise ValueError("must be HH:MM (00:00 to 23:59)")
    return time(int(match.group(1)), int(match.group(2)))


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
    """What the task is now, even if the schedule has not ticked since its start or end."""
    if stored is TaskStatus.FINISHED or now >= end:
        return TaskStatus.FINISHED
    if now >= start:
        return TaskStatus.RUNNING
    return TaskStatus.SCHEDULED


def check_update_allowed(status: TaskStatus, changed: Iterable[str]) -> None:
    """Raise Conflict when the lifecycle forbids changing these fields now."""
    changed = set(changed)
    if status is TaskStatus.FINISHED:
        raise Conflict("The task has finished; it can no longer change.")
    if status is TaskStatus.RUNNING:
        frozen = sorted(changed - MUTABLE_WHILE_RUNNING)
        if frozen:
            raise Conflict(
                "The task is running: only end_time and send_window may change "
                f"(refused: {', '.join(frozen)})."
            )
