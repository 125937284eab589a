"""A task's sends over time (the operator console's chart): its timeline's minute counts
(``chalicelib/domain/timeline.py``), regrouped into the buckets asked for."""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.domain.timeline import (
    BUCKETS,
    MAX_POINTS,
    Point,
    default_bucket,
    point_count,
    points,
    smallest_fitting_bucket,
)
from chalicelib.errors import NotFound, ValidationFailed
from chalicelib.ports import TaskCatalog, Timelines


@dataclass(frozen=True)
class Timeline:
    task_id: int
    bucket_seconds: int
    points: list[Point]


class TimelineService:
    def __init__(self, tasks: TaskCatalog, timelines: Timelines) -> None:
        self._tasks = tasks
        self._timelines = timelines

    def timeline(self, task_id: int, *, bucket: int | None) -> Timeline:
        """The task's points in ``bucket``-second buckets (one of ``BUCKETS``; by default
        the smallest giving at most 500 points). NotFound for a task that does not exist
        (or was deleted); ValidationFailed for a bucket that would give more than
        ``MAX_POINTS`` points."""
        if self._tasks.get(task_id) is None:
            raise NotFound(f"Task {task_id} does not exist.")
        minutes = {
            minute: counts
            for minute, counts in self._timelines.minutes(task_id).items()
            if any(counts.values())
        }
        chosen = bucket if bucket is not None else default_bucket(minutes)
        if minutes and point_count(min(minutes), max(minutes), chosen) > MAX_POINTS:
            fitting = smallest_fitting_bucket(minutes) or BUCKETS[-1]
            raise ValidationFailed(
                "The bucket is too small for this task's timeline.",
                {"bucket": f"gives over {MAX_POINTS} points here: use {fitting} or more"},
            )
        return Timeline(task_id, chosen, points(minutes, chosen))
