"""The purge pass: a deleted task's messages (and counts) are removed soon after the delete.

Runs after every scheduled dispatcher run, bounded by its own budget and resumable (each
page deletes what it read, so the next run goes on where this one stopped). It makes no
provider call and needs none of the task: SPEC rule 8 holds before it runs (the delete
returned only once no sender could still call), and after (nothing is left to send).
Deletes are rare: most runs make one query that finds nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from chalicelib import logs
from chalicelib.ports import DeletedTaskData

log = logs.get_logger("purge")

# Message keys read and deleted a page (four BatchWriteItem requests of 25).
PURGE_PAGE = 100
# Deleted tasks looked at per run; the rest wait for the next one.
TASKS_PER_RUN = 25
# Timeline days removed a call (24 hour items each: one BatchWriteItem request a day).
TIMELINE_DAYS_PAGE = 10


@dataclass
class PurgeReport:
    tasks: int = 0
    messages: int = 0
    incomplete: list[int] = field(default_factory=list)


class Purger:
    def __init__(
        self,
        data: DeletedTaskData,
        *,
        page_size: int = PURGE_PAGE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._data = data
        self._page = page_size
        self._monotonic = monotonic

    def purge_deleted(self, budget_seconds: float) -> PurgeReport:
        deadline = self._monotonic() + budget_seconds
        report = PurgeReport()
        for task_id in self._data.deleted_tasks(TASKS_PER_RUN):
            if self._monotonic() >= deadline:
                report.incomplete.append(task_id)
                continue
            with logs.bind(task_id=task_id):
                removed, done = self._purge(task_id, deadline)
                report.messages += removed
                if not done:
                    report.incomplete.append(task_id)
                    continue
                if not self._purge_timeline(task_id, deadline):
                    report.incomplete.append(task_id)
                    continue
                self._data.remove_counts(task_id)
                self._data.purged(task_id)
                report.tasks += 1
                log.info("deleted task's messages removed", extra={"messages": removed})
        return report

    def _purge_timeline(self, task_id: int, deadline: float) -> bool:
        """Its timeline's items, before the counter items that list them (so a pass cut
        short finds the rest next time)."""
        while self._monotonic() < deadline:
            if self._data.remove_timeline(task_id, TIMELINE_DAYS_PAGE) < TIMELINE_DAYS_PAGE:
                return True
        return False

    def _purge(self, task_id: int, deadline: float) -> tuple[int, bool]:
        removed = 0
        while self._monotonic() < deadline:
            page = self._data.remove_messages(task_id, self._page)
            removed += page
            if page < self._page:
                return removed, True
        return removed, False
