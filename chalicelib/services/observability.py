"""``GET /api/metrics``: the service's state in Prometheus text format.

Totals come from the per-task counters (never from counting messages) and task
statuses from the task items: the cost grows with the number of live tasks, not with
the number of messages, and a scrape reads each task once.
"""

from __future__ import annotations

from collections import Counter

from chalicelib.clock import Clock
from chalicelib.domain.messages import MessageStatus
from chalicelib.domain.tasks import TaskStatus
from chalicelib.ports import JobQueue, MessageStats, TaskCatalog

PAGE = 100


def _gauge(name: str, help_text: str, samples: dict[str, float] | float, label: str = "") -> str:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    if isinstance(samples, dict):
        lines += [f'{name}{{{label}="{key}"}} {value:g}' for key, value in samples.items()]
    else:
        lines.append(f"{name} {samples:g}")
    return "\n".join(lines)


class ServiceGauges:
    """The service's state as Prometheus gauges: a reading of the tables and the queue,
    unlike the counts and latencies the handlers publish to CloudWatch (EMF)."""

    def __init__(
        self, clock: Clock, *, tasks: TaskCatalog, messages: MessageStats, queue: JobQueue
    ) -> None:
        self._clock = clock
        self._tasks = tasks
        self._messages = messages
        self._queue = queue

    def prometheus_text(self) -> str:
        now = self._clock()
        tasks: Counter[str] = Counter({status.value: 0 for status in TaskStatus})
        messages: Counter[str] = Counter({status.value: 0 for status in MessageStatus})
        created = 0
        cursor = None
        while True:
            page = self._tasks.page(limit=PAGE, cursor=cursor)
            counts = self._messages.counts([task.id for task in page.items])
            for task in page.items:
                tasks[task.status_at(now).value] += 1
                found = counts[task.id]
                created += found.total
                messages.update(found.by_status())
            cursor = page.next
            if cursor is None:
                break
        return (
            "\n".join(
                [
                    _gauge(
                        "notify_messages",
                        "Messages of the live tasks by status.",
                        dict(messages),
                        "status",
                    ),
                    _gauge("notify_messages_created", "Messages created for live tasks.", created),
                    _gauge("notify_tasks", "Live tasks by status.", dict(tasks), "status"),
                    _gauge(
                        "notify_queue_jobs",
                        "Send jobs waiting in the queue (visible and delayed).",
                        self._queue.depth(),
                    ),
                ]
            )
            + "\n"
        )
