"""The send-job queue on SQS: the job format and batched, retried sends."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from chalicelib import aws, logs
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


class SendQueue:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
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
            self._url = self.client.get_queue_url(QueueName=self._settings.send_queue)["QueueUrl"]
        return self._url

    def send(
        self, jobs: Sequence[SendJob], delay_seconds: float = 0, *, now_ms: int | None = None
    ) -> None:
        """Enqueue jobs in batches of ten; failed entries are retried, then raised.

        With ``now_ms``, each job is held back until its own ``not_before_ms`` (up to the
        queue's maximum delay) instead of by ``delay_seconds``.
        """
        for start in range(0, len(jobs), SQS_BATCH):
            batch = {str(i): job for i, job in enumerate(jobs[start : start + SQS_BATCH])}
            for attempt in range(SEND_ATTEMPTS):
                entries = [
                    {
                        "Id": key,
                        "MessageBody": job.to_body(),
                        "DelaySeconds": self._delay(job, delay_seconds, now_ms),
                    }
                    for key, job in batch.items()
                ]
                answer = self.client.send_message_batch(QueueUrl=self.url, Entries=entries)
                failed = {entry["Id"] for entry in answer.get("Failed", [])}
                batch = {key: job for key, job in batch.items() if key in failed}
                if not batch:
                    break
                time.sleep(0.05 * 2**attempt)
            if batch:
                raise RuntimeError(f"SQS refused {len(batch)} send jobs")

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
