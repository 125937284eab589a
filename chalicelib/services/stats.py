"""Delivery statistics: counts read from the maintained counters, never by counting.

The cost of a stats call depends on the page size, not on how many messages a task
has: counts come from the counter items written with every status change, and a
task's messages are read one page at a time through a key or index condition.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.clock import Clock
from chalicelib.domain.messages import Message, MessageStatus
from chalicelib.domain.tasks import Task
from chalicelib.errors import NotFound
from chalicelib.ports import Counts, MessageStats, Page, TaskCatalog
from chalicelib.services.tasks import as_of


@dataclass(frozen=True)
class TaskCounts:
    task: Task
    counts: Counts


@dataclass(frozen=True)
class TaskDetail:
    task: Task
    counts: Counts
    messages: Page[Message]


class StatsService:
    def __init__(self, clock: Clock, tasks: TaskCatalog, messages: MessageStats) -> None:
        self._clock = clock
        self._tasks = tasks
        self._messages = messages

    def overview(self, *, limit: int, cursor: str | None) -> Page[TaskCounts]:
        """Every task (paged) with its message counts by status."""
        now = self._clock()
        page = self._tasks.page(limit=limit, cursor=cursor)
        counts = self._messages.counts([task.id for task in page.items])
        items = [TaskCounts(as_of(task, now), counts[task.id]) for task in page.items]
        return Page(items, page.next)

    def detail(
        self, task_id: int, *, status: MessageStatus | None, limit: int, cursor: str | None
    ) -> TaskDetail:
        """One task, its counts, and its messages (all, or those with one status)."""
        task = self._tasks.get(task_id)
        if task is None:
            raise NotFound(f"Task {task_id} does not exist.")
        counts = self._messages.counts([task_id])[task_id]
        messages = self._messages.page(task_id, status=status, limit=limit, cursor=cursor)
        return TaskDetail(as_of(task, self._clock()), counts, messages)
