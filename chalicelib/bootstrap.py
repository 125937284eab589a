"""Composition root: wires settings, storage and the clock into the services.

The deployed handlers, the tests and the local runner all get their services here;
tests pass a frozen clock instead of patching module globals.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from chalicelib import logs
from chalicelib.clock import Clock, system_clock
from chalicelib.domain.messages import RetryPolicy
from chalicelib.provider import Provider
from chalicelib.queue import SendQueue
from chalicelib.services.api_keys import ApiKeyService
from chalicelib.services.clients import ClientService
from chalicelib.services.dispatch import Dispatcher
from chalicelib.services.observability import MetricsService
from chalicelib.services.sending import Sender
from chalicelib.services.stats import StatsService
from chalicelib.services.tasks import TaskService
from chalicelib.settings import Settings, get_settings
from chalicelib.storage import models


@dataclass(frozen=True)
class Services:
    settings: Settings
    clock: Clock
    clients: ClientService
    api_keys: ApiKeyService
    tasks: TaskService
    stats: StatsService
    metrics: MetricsService
    queue: SendQueue
    dispatcher: Dispatcher
    sender: Sender


def bootstrap(
    settings: Settings | None = None,
    clock: Clock = system_clock,
    *,
    provider: Provider | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Services:
    settings = settings or get_settings()
    logs.configure(settings.log_level, settings.log_style)
    models.configure(settings)
    queue = SendQueue(settings)
    dispatcher = Dispatcher(settings, clock, queue, sleep=sleep)
    policy = RetryPolicy(
        max_attempts=settings.max_attempts,
        base_seconds=settings.retry_base_seconds,
        cap_seconds=settings.retry_cap_seconds,
    )

    def start_due_task(task_id: int) -> None:
        dispatcher.start_task(task_id, settings.api_dispatch_budget_seconds)

    return Services(
        settings=settings,
        clock=clock,
        clients=ClientService(clock),
        api_keys=ApiKeyService(clock),
        tasks=TaskService(
            clock,
            on_due=start_due_task,
            sleep=sleep,
            delete_grace_seconds=settings.delete_grace_seconds,
        ),
        stats=StatsService(clock),
        metrics=MetricsService(clock, queue),
        queue=queue,
        dispatcher=dispatcher,
        sender=Sender(
            clock,
            queue,
            provider or Provider.from_settings(settings),
            policy,
            park_after=timedelta(seconds=settings.park_after_seconds),
            stage=settings.stage,
        ),
    )
