"""Composition root: wires settings, storage and the clock into the services.

The deployed handlers, the tests and the local runner all get their services here;
tests pass a frozen clock instead of patching module globals.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib import logs
from chalicelib.clock import Clock, system_clock
from chalicelib.services.api_keys import ApiKeyService
from chalicelib.services.clients import ClientService
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


def bootstrap(settings: Settings | None = None, clock: Clock = system_clock) -> Services:
    settings = settings or get_settings()
    logs.configure(settings.log_level)
    models.configure(settings)
    return Services(
        settings=settings,
        clock=clock,
        clients=ClientService(clock),
        api_keys=ApiKeyService(clock),
        tasks=TaskService(clock),
    )
