"""The AWS resources the stack needs, created in an emulator (make run, tests).

In AWS the CloudFormation template creates them; here they come from the same
settings: the tables from the PynamoDB models, the send queue and its dead-letter queue.
"""

from __future__ import annotations

import json
from typing import Any

from chalicelib.bootstrap import Services
from chalicelib.storage import models

# Receives before a job that keeps failing (poison) moves to the dead-letter queue.
MAX_RECEIVE_COUNT = 5
VISIBILITY_TIMEOUT_SECONDS = 180


def dead_letter_queue_name(queue: str) -> str:
    return f"{queue}-dlq"


def ensure_queues(services: Services) -> dict[str, str]:
    """Create the send queue, the fan-out queue and their DLQs when absent; return the
    send queue's URLs."""
    urls = {}
    for key, name in (
        ("queue", services.settings.send_queue),
        ("fanout_queue", services.settings.fanout_queue),
    ):
        queue_url, dlq_url = _queue_with_dlq(services.queue.client, name)
        urls[key] = queue_url
        urls.setdefault("dead_letter_queue", dlq_url)
    return urls


def _queue_with_dlq(sqs: Any, name: str) -> tuple[str, str]:
    dlq_url = sqs.create_queue(QueueName=dead_letter_queue_name(name))["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(VISIBILITY_TIMEOUT_SECONDS),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
            ),
        },
    )["QueueUrl"]
    return url, dlq_url


def ensure_message_stream() -> None:
    """The messages table's stream, which the counts follow (a table created before it
    was needed gets it now)."""
    connection: Any = models.MessageModel._get_connection().connection
    name = models.MessageModel.Meta.table_name
    described = connection.describe_table(name)
    if described.get("StreamSpecification", {}).get("StreamEnabled"):
        return
    connection.client.update_table(
        TableName=name,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )


def ensure_resources(services: Services) -> list[str]:
    """Tables and queues; returns the names of the tables created now."""
    services.bind_storage()
    created = models.create_tables()
    ensure_message_stream()
    ensure_queues(services)
    return created
