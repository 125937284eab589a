"""Composition root: wires settings, storage and the clock into the services.

The deployed handlers, the tests and the local runner all get their services here;
tests pass a frozen clock (and a provider, if they like) instead of patching module
globals. Each service is built, and its modules imported, on first use: three Lambda
functions share ``app.py`` (the authorizer imports ``chalicelib/api/auth.py`` alone),
and none should pay at cold start for what another needs (the sender's HTTP client, the
API's schemas).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING

from chalicelib import logs
from chalicelib.clock import Clock, system_clock
from chalicelib.settings import Settings, get_settings

# The imports below are for the type checker only; at run time each is done by the
# property that needs it.
if TYPE_CHECKING:
    from chalicelib.bucket import S3ImportFiles
    from chalicelib.domain.lifecycle import Timing
    from chalicelib.provider import Provider
    from chalicelib.queue import SendQueue, SqsFanoutQueue, SqsImportQueue
    from chalicelib.services.api_keys import ApiKeyService
    from chalicelib.services.audience import AudienceService
    from chalicelib.services.clients import ClientService
    from chalicelib.services.counting import StreamCounter
    from chalicelib.services.dispatch import Dispatcher
    from chalicelib.services.exports import ExportService
    from chalicelib.services.imports import ImportService
    from chalicelib.services.observability import ServiceGauges
    from chalicelib.services.purge import Purger
    from chalicelib.services.sending import Sender
    from chalicelib.services.stats import StatsService
    from chalicelib.services.stoplist import StopListService
    from chalicelib.services.tasks import TaskService
    from chalicelib.services.test_sends import TestSendService
    from chalicelib.services.timeline import TimelineService
    from chalicelib.storage.api_keys import DynamoApiKeys
    from chalicelib.storage.clients import DynamoClients
    from chalicelib.storage.messages import DynamoMessages
    from chalicelib.storage.ratelimit import DynamoRateLimiter
    from chalicelib.storage.stoplist import DynamoStopList
    from chalicelib.storage.tasks import DynamoTasks


class Services:
    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        provider: Provider | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._provider = provider
        self._sleep = sleep

    def bind_storage(self) -> None:
        """Point the PynamoDB models at this stage's tables and endpoint (a no-op when they
        already are): called before anything that reads or writes a table is built."""
        from chalicelib.storage import models  # noqa: PLC0415 - lazy, see module doc

        models.configure(self.settings)

    @cached_property
    def api_keys(self) -> ApiKeyService:
        from chalicelib.services.api_keys import ApiKeyService  # noqa: PLC0415

        return ApiKeyService(self.clock, self.api_key_repository)

    @cached_property
    def clients(self) -> ClientService:
        from chalicelib.services.clients import ClientService  # noqa: PLC0415

        return ClientService(self.clock, self.client_repository)

    @cached_property
    def imports(self) -> ImportService:
        """Bulk imports of clients (SPEC, "Bulk import and export"): the API's routes and
        the import function (``app.import_files``)."""
        from chalicelib.services.imports import ImportService  # noqa: PLC0415
        from chalicelib.storage.imports import DynamoImports  # noqa: PLC0415

        self.bind_storage()
        return ImportService(
            self.clock,
            imports=DynamoImports(),
            clients=self.client_repository,
            files=self.import_files,
            jobs=self.import_queue,
            bucket=self.settings.import_bucket,
            url_seconds=self.settings.import_url_seconds,
            max_bytes=self.settings.import_max_bytes,
        )

    @cached_property
    def exports(self) -> ExportService:
        """Exports of a task's messages as CSV (SPEC, "Bulk import and export"): the API's
        routes and the import function's export jobs (``app.import_files``)."""
        from chalicelib.services.exports import ExportService  # noqa: PLC0415
        from chalicelib.storage.exports import DynamoExports  # noqa: PLC0415

        self.bind_storage()
        return ExportService(
            self.clock,
            exports=DynamoExports(),
            files=self.import_files,
            jobs=self.import_queue,
            url_seconds=self.settings.import_url_seconds,
        )

    @cached_property
    def import_files(self) -> S3ImportFiles:
        from chalicelib.bucket import S3ImportFiles  # noqa: PLC0415

        return S3ImportFiles(self.settings)

    @cached_property
    def import_queue(self) -> SqsImportQueue:
        from chalicelib.queue import SqsImportQueue  # noqa: PLC0415

        return SqsImportQueue(self.settings)

    @cached_property
    def tasks(self) -> TaskService:
        from chalicelib.services.tasks import TaskService  # noqa: PLC0415

        def start_due_task(task_id: int) -> None:
            self.dispatcher.start_task(task_id)

        return TaskService(
            self.clock,
            self.task_repository,
            on_due=start_due_task,
            sleep=self._sleep,
            delete_grace_seconds=self.settings.delete_grace(),
        )

    @cached_property
    def audience(self) -> AudienceService:
        """The audience preview: exact counts and a sample (issue 18)."""
        from chalicelib.services.audience import AudienceService  # noqa: PLC0415
        from chalicelib.storage.audience import DynamoAudience  # noqa: PLC0415

        self.bind_storage()
        return AudienceService(DynamoAudience())

    @cached_property
    def stoplist(self) -> StopListService:
        from chalicelib.services.stoplist import StopListService  # noqa: PLC0415

        return StopListService(self.clock, self.stoplist_repository)

    @cached_property
    def test_sends(self) -> TestSendService:
        """A task's text sent now to a few phones (issue 18): the API calls the provider."""
        from chalicelib.services.test_sends import TestSendService  # noqa: PLC0415
        from chalicelib.storage.ids import DynamoTestSendNumbers  # noqa: PLC0415

        self.bind_storage()
        return TestSendService(
            tasks=self.task_repository,
            stoplist=self.stoplist_repository,
            provider=self.provider,
            numbers=DynamoTestSendNumbers(),
        )

    @cached_property
    def stoplist_repository(self) -> DynamoStopList:
        """Also what the test sends check right before their provider calls, and what the
        sender will."""
        from chalicelib.storage.stoplist import DynamoStopList  # noqa: PLC0415

        self.bind_storage()
        return DynamoStopList()

    @cached_property
    def rate_limiter(self) -> DynamoRateLimiter:
        """The send rate limits every sender shares (``chalicelib/domain/ratelimit.py``);
        the cap over all tasks is ``settings.send_rate_limit``."""
        from chalicelib.storage.ratelimit import DynamoRateLimiter  # noqa: PLC0415

        self.bind_storage()
        return DynamoRateLimiter(self.settings.rate_horizon())

    @cached_property
    def feed_limiter(self) -> DynamoRateLimiter:
        """The turns a rate-limited task's fan-out queues its jobs at (looking
        ``FEED_AHEAD`` ahead: chalicelib/services/fanout.py)."""
        from chalicelib.services.fanout import FEED_AHEAD  # noqa: PLC0415
        from chalicelib.storage.ratelimit import DynamoRateLimiter  # noqa: PLC0415

        self.bind_storage()
        return DynamoRateLimiter(FEED_AHEAD)

    @cached_property
    def stats(self) -> StatsService:
        from chalicelib.services.stats import StatsService  # noqa: PLC0415

        return StatsService(self.clock, self.task_repository, self.message_repository)

    @cached_property
    def timeline(self) -> TimelineService:
        """A task's sends over time, kept by the counting below."""
        from chalicelib.services.timeline import TimelineService  # noqa: PLC0415
        from chalicelib.storage.timeline import DynamoTimelines  # noqa: PLC0415

        self.bind_storage()
        return TimelineService(self.task_repository, DynamoTimelines())

    @cached_property
    def counting(self) -> StreamCounter:
        """What the messages table's stream handler calls: the counts and the timeline."""
        from chalicelib.services.counting import StreamCounter  # noqa: PLC0415
        from chalicelib.storage.messages import DynamoCountLedger  # noqa: PLC0415

        self.bind_storage()
        return StreamCounter(DynamoCountLedger(), self.clock)

    @cached_property
    def gauges(self) -> ServiceGauges:
        """What ``GET /api/metrics`` reads (not the CloudWatch metrics the handlers publish)."""
        from chalicelib.services.observability import ServiceGauges  # noqa: PLC0415

        return ServiceGauges(
            self.clock,
            tasks=self.task_repository,
            messages=self.message_repository,
            queue=self.queue,
        )

    @cached_property
    def queue(self) -> SendQueue:
        from chalicelib.queue import SendQueue  # noqa: PLC0415

        return SendQueue(self.settings)

    @cached_property
    def fanout_queue(self) -> SqsFanoutQueue:
        from chalicelib.queue import SqsFanoutQueue  # noqa: PLC0415

        return SqsFanoutQueue(self.settings)

    @cached_property
    def client_repository(self) -> DynamoClients:
        from chalicelib.storage.clients import DynamoClients  # noqa: PLC0415

        self.bind_storage()
        return DynamoClients()

    @cached_property
    def api_key_repository(self) -> DynamoApiKeys:
        from chalicelib.storage.api_keys import DynamoApiKeys  # noqa: PLC0415

        self.bind_storage()
        return DynamoApiKeys()

    @cached_property
    def message_repository(self) -> DynamoMessages:
        from chalicelib.storage.messages import DynamoMessages  # noqa: PLC0415

        self.bind_storage()
        return DynamoMessages()

    @cached_property
    def task_repository(self) -> DynamoTasks:
        from chalicelib.storage.tasks import DynamoTasks  # noqa: PLC0415

        self.bind_storage()
        return DynamoTasks(self.settings.retention())

    @cached_property
    def dispatcher(self) -> Dispatcher:
        from chalicelib.services.dispatch import Dispatcher  # noqa: PLC0415
        from chalicelib.storage.audience import DynamoAudience  # noqa: PLC0415
        from chalicelib.storage.fanout import DynamoFanoutSegments  # noqa: PLC0415

        return Dispatcher(
            self.settings,
            self.clock,
            tasks=self.task_repository,
            messages=self.message_repository,
            audience=DynamoAudience(),
            queue=self.queue,
            segments=DynamoFanoutSegments(),
            fanout_queue=self.fanout_queue,
            timing=timing(self.settings),
            sleep=self._sleep,
            feed=self.feed_limiter,
        )

    @cached_property
    def purger(self) -> Purger:
        """Removes deleted tasks' messages, after each scheduled dispatcher run."""
        from chalicelib.services.purge import Purger  # noqa: PLC0415
        from chalicelib.storage.purge import DynamoPurge  # noqa: PLC0415

        self.bind_storage()
        return Purger(DynamoPurge())

    @cached_property
    def provider(self) -> Provider:
        """The external send API's client (the one given, in tests): the sender's and the
        test sends'. In AWS its token is read from Parameter Store on the first call."""
        from chalicelib.provider import Provider  # noqa: PLC0415

        return self._provider or Provider.from_settings(self.settings)

    @cached_property
    def sender(self) -> Sender:
        from chalicelib.domain.messages import RetryPolicy  # noqa: PLC0415
        from chalicelib.services.sending import Sender  # noqa: PLC0415

        policy = RetryPolicy(
            max_attempts=self.settings.max_attempts,
            base_seconds=self.settings.retry_base_seconds,
            cap_seconds=self.settings.retry_cap_seconds,
        )
        return Sender(
            self.clock,
            messages=self.message_repository,
            tasks=self.task_repository,
            queue=self.queue,
            provider=self.provider,
            policy=policy,
            timing=timing(self.settings),
            stage=self.settings.stage,
            max_check_age=timedelta(seconds=self.settings.max_check_age_seconds),
            retention=self.settings.retention(),
            stops=self.stoplist_repository,
            limiter=self.rate_limiter,
            send_rate_limit=self.settings.send_rate_limit,
        )


def timing(settings: Settings) -> Timing:
    from chalicelib.domain.lifecycle import Timing  # noqa: PLC0415

    return Timing(
        lease=timedelta(seconds=settings.lease_seconds),
        park_after=timedelta(seconds=settings.park_after_seconds),
        wake_lead=timedelta(seconds=settings.wake_lead_seconds),
        watchdog=timedelta(seconds=settings.watchdog_seconds),
    )


def bootstrap(
    settings: Settings | None = None,
    clock: Clock = system_clock,
    *,
    provider: Provider | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Services:
    settings = settings or get_settings()
    logs.configure(settings.log_level, settings.log_style)
    return Services(settings, clock, provider=provider, sleep=sleep)


_services: Services | None = None


def services() -> Services:
    """The wired services of this container, built on first use (settings are read lazily).

    Every handler asks here: the routes of each blueprint, the authorizer and the event
    handlers in ``app.py`` (which re-exports this and :func:`use_services`).
    """
    global _services  # noqa: PLW0603 - one composition per Lambda container
    if _services is None:
        _services = bootstrap()
    return _services


def use_services(replacement: Services | None) -> None:
    """Swap the wiring (tests pass a frozen clock; None rebuilds from the environment)."""
    global _services  # noqa: PLW0603
    _services = replacement
