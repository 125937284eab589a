"""Driving the schedule and the queue the way Lambda does, inside a test."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import app as app_module
from chalicelib.bootstrap import Services
from chalicelib.storage.models import MessageModel
from local.lambda_runner import LambdaContext, scheduled_event, sqs_event

# Outcomes that change a message; a round with none of them only shuffles jobs that wait
# for a later time, unless all it did was throw stale copies away.
PROGRESS_OUTCOMES = {
    "sent",
    "failed",
    "expired",
    "retry",
    "set_aside",
    "parked",
    "error",
    "poison",
}


def made_progress(outcomes: Counter[str]) -> bool:
    if set(outcomes) & PROGRESS_OUTCOMES:
        return True
    return bool(outcomes["dropped"]) and not outcomes["deferred"]


@dataclass
class DrainReport:
    rounds: int = 0
    invocations: int = 0
    failed_records: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


class Pipeline:
    def __init__(self, services: Services) -> None:
        self.services = services
        queue = services.queue
        self.sqs: Any = queue.client
        self.url = queue.url
        self.arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]

    def tick(self) -> None:
        """Fire the scheduled handler once."""
        app_module.dispatch(scheduled_event(), LambdaContext("dispatch", timeout_seconds=60))

    def depth(self) -> int:
        return self.services.queue.depth()

    def fan_out(self, *, max_jobs: int = 100) -> int:
        """Hand the fan-out queue's visible jobs to the ``fan_out`` handler one by one, as
        Lambda's mapping does (batch size 1), deleting each one handled; returns how many
        were handled. A handler that raises leaves its job (visible again at once)."""
        fanout: Any = self.services.fanout_queue
        arn = fanout.client.get_queue_attributes(QueueUrl=fanout.url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        handled = 0
        for _ in range(max_jobs):
            received = fanout.client.receive_message(
                QueueUrl=fanout.url, MaxNumberOfMessages=1, WaitTimeSeconds=0, VisibilityTimeout=0
            ).get("Messages", [])
            if not received:
                break
            event = sqs_event(received, arn, "us-east-1")
            app_module.fan_out(event, LambdaContext("fan_out", timeout_seconds=60))
            fanout.client.delete_message(
                QueueUrl=fanout.url, ReceiptHandle=received[0]["ReceiptHandle"]
            )
            handled += 1
        return handled

    def receive(self) -> list[dict[str, Any]]:
        answer = self.sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=0,  # a failed job is visible again at once (frozen clock)
            AttributeNames=["All"],
        )
        return list(answer.get("Messages", []))

    def invoke(self, messages: list[dict[str, Any]]) -> set[str]:
        """Call the SQS handler with these messages; return the failed message ids."""
        event = sqs_event(messages, self.arn, "us-east-1")
        answer = app_module.send(event, LambdaContext("send", timeout_seconds=30))
        return {item["itemIdentifier"] for item in answer["batchItemFailures"]}

    def drain(self, *, duplicate: bool = False, max_rounds: int = 200) -> DrainReport:
        """Deliver jobs until the queue is empty or only holds jobs that are not due.

        ``duplicate`` delivers every batch twice (two invocations) before deleting it,
        as SQS's at-least-once delivery may.
        """
        report = DrainReport()
        before = Counter(self._outcomes())
        for _ in range(max_rounds):
            messages = self.receive()
            if not messages:
                break
            report.rounds += 1
            failed = self.invoke(messages)
            report.invocations += 1
            if duplicate:
                failed |= self.invoke(messages)
                report.invocations += 1
            report.failed_records += len(failed)
            done = [m for m in messages if m["MessageId"] not in failed]
            if done:
                self.sqs.delete_message_batch(
                    QueueUrl=self.url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(done)
                    ],
                )
            round_outcomes = Counter(self._outcomes()) - before
            before = Counter(self._outcomes())
            report.outcomes.update(round_outcomes)
            if failed and len(failed) == len(messages):
                break
            if not made_progress(round_outcomes):
                break  # everything left waits for a later time
        return report

    def _outcomes(self) -> dict[str, int]:
        return dict(self.services.sender.totals)


def messages_of(task_id: int) -> dict[int, MessageModel]:
    return {int(m.client_id): m for m in MessageModel.query(task_id, consistent_read=True)}
