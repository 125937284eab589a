"""The queues on SQS: send jobs (one message each) and fan-out jobs (one audience
segment each, ``chalicelib/domain/fanout.py``): their formats and batched, retried sends."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from chalicelib import aws, logs
from chalicelib.domain.exports import export_job_body
from chalicelib.settings import Settings

log = logs.get_logger("queue")

SQS_BATCH = 10
SEND_ATTEMPTS = 4
JOB_VERSION = 1


@dataclass(frozen=True)
class SendJob:
    """One message to send. Phone and zone are copied from the client at fan-out."""

    message_id: int
    task_id: int
    client_id: int
    phone: str
    utc: str
    attempt: int = 0  # provider attempts already made
    not_before_ms: int | None = None  # not to be sent before (retry backoff, send window)
    generation: int = 0  # matches the message's job_gen while this copy is current

    def to_body(self) -> str:
        return json.dumps({"v": JOB_VERSION, **asdict(self)}, separators=(",", ":"))

    @classmethod
    def from_body(cls, body: str) -> SendJob:
        """Parse a job; ValueError for anything this code did not write."""
        data = json.loads(body)
        if not isinstance(data, dict) or data.pop("v", None) != JOB_VERSION:
            raise ValueError("not a send job")
        try:
            job = cls(**data)
        except TypeError as error:
            raise ValueError(f"bad send job: {error}") from None
        ints = (job.message_id, job.task_id, job.client_id, job.attempt, job.generation)
        if not all(type(value) is int for value in ints) or not isinstance(job.phone, str):
            raise ValueError("bad send job field types")
        return job

    def next_copy(self, generation: int, attempt: int, not_before_ms: int | None) -> SendJob:
        """The copy of this job that the message's new generation expects."""
        return replace(self, generation=generation, attempt=attempt, not_before_ms=not_before_ms)


@dataclass(frozen=True)
class FanoutJob:
    """Fan out one segment of a task's audience (as far as its worker's time allows)."""

    task_id: int
    segment: int

    def to_body(self) -> str:
        return json.dumps({"v": JOB_VERSION, "fanout": asdict(self)}, separators=(",", ":"))

    @classmethod
    def from_body(cls, body: str) -> FanoutJob:
        """Parse a job; ValueError for anything this code did not write."""
        data = json.loads(body)
        if not isinstance(data, dict) or data.get("v") != JOB_VERSION:
            raise ValueError("not a fan-out job")
        fields = data.get("fanout")
        if not isinstance(fields, dict) or set(fields) != {"task_id", "segment"}:
            raise ValueError("bad fan-out job")
        if not all(type(value) is int and value >= 0 for value in fields.values()):
            raise ValueError("bad fan-out job field types")
        return cls(**fields)


class _Queue:
    """One SQS queue by name: its client, its URL (looked up once), batched sends."""

    def __init__(self, settings: Settings, name: str) -> None:
        self._settings = settings
        self._name = name
        self._url: str | None = None

    @property
    def client(self) -> Any:
        return aws.client(
            "sqs",
            self._settings.aws_region,
            self._settings.aws_endpoint_url,
            connect_timeout=3,
            read_timeout=10,
            attempts=4,
        )

    @property
    def url(self) -> str:
        if self._url is None:
            self._url = self.client.get_queue_url(QueueName=self._name)["QueueUrl"]
        return self._url

    def _send_bodies(self, bodies: Sequence[tuple[str, int]]) -> None:
        """(body, delay seconds) in batches of ten; failed entries are retried, then
        raised."""
        for start in range(0, len(bodies), SQS_BATCH):
            batch = {str(i): entry for i, entry in enumerate(bodies[start : start + SQS_BATCH])}
            for attempt in range(SEND_ATTEMPTS):
                entries = [
                    {"Id": key, "MessageBody": body, "DelaySeconds": delay}
                    for key, (body, delay) in batch.items()
                ]
                answer = self.client.send_message_batch(QueueUrl=self.url, Entries=entries)
                failed = {entry["Id"] for entry in answer.get("Failed", [])}
                batch = {key: entry for key, entry in batch.items() if key in failed}
                if not batch:
                    break
                time.sleep(0.05 * 2**attempt)
            if batch:
                raise RuntimeError(f"SQS refused {len(batch)} jobs of {self._name}")


class SendQueue(_Queue):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, settings.send_queue)

    def send(
        self, jobs: Sequence[SendJob], delay_seconds: float = 0, *, now_ms: int | None = None
    ) -> None:
        """Enqueue jobs in batches of ten; failed entries are retried, then raised.

        With ``now_ms``, each job is held back until its own ``not_before_ms`` (up to the
        queue's maximum delay) instead of by ``delay_seconds``.
        """
        self._send_bodies(
            [(job.to_body(), self._delay(job, delay_seconds, now_ms)) for job in jobs]
        )

    def _delay(self, job: SendJob, delay_seconds: float, now_ms: int | None) -> int:
        if now_ms is not None and job.not_before_ms is not None:
            delay_seconds = (job.not_before_ms - now_ms) / 1000
        # Rounded up: a job that arrives early only comes back to wait again.
        return min(max(math.ceil(delay_seconds), 0), self._settings.queue_max_delay_seconds)

    def depth(self) -> int:
        """Jobs ready to be received now. Delayed jobs (retries, window waits) are not
        counted: they are not work the senders have to do before a new page's."""
        attributes = self.client.get_queue_attributes(
            QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes.get("ApproximateNumberOfMessages", 0))


class SqsFanoutQueue(_Queue):
    """The fan-out workers' queue (``app.fan_out``)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, settings.fanout_queue)

    def send(self, jobs: Sequence[FanoutJob], delay_seconds: float = 0) -> None:
        delay = min(max(math.ceil(delay_seconds), 0), self._settings.queue_max_delay_seconds)
        self._send_bodies([(job.to_body(), delay) for job in jobs])


@dataclass(frozen=True)
class ImportJob:
    """Carry on with an import from its checkpoint (the import queue also carries S3's
    "object created" events, which start one: ``chalicelib/services/imports.py``)."""

    import_id: int

    def to_body(self) -> str:
        return json.dumps({"v": JOB_VERSION, "import": self.import_id}, separators=(",", ":"))


@dataclass(frozen=True)
class ExportJob:
    """Start or carry on with an export of a task's messages from its checkpoint (a job
    kind of the import queue: ``chalicelib/services/exports.py``)."""

    export_id: int

    def to_body(self) -> str:
        return export_job_body(self.export_id)


class SqsImportQueue(_Queue):
    """The import function's queue (``app.import_files``): imports' and exports' jobs."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, settings.import_queue)

    def send(self, job: ImportJob | ExportJob) -> None:
        self._send_bodies([(job.to_body(), 0)])
