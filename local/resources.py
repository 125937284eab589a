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


def ensure_import_bucket(services: Services) -> None:
    """The import bucket, telling the import queue (and its DLQ) of each file uploaded
    under ``imports/``, as infra/template.yaml sets it up in AWS: moto delivers the same
    "object created" event to the queue, which the local runner hands to the same
    handler as Lambda's mapping (``app.import_files``). CORS lets a browser (the
    console) PUT to the pre-signed URL."""
    settings = services.settings
    queue_url, _ = _queue_with_dlq(services.import_queue.client, settings.import_queue)
    queue_arn = services.import_queue.client.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    s3 = services.import_files.client
    existing = {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}
    if settings.import_bucket not in existing:
        s3.create_bucket(Bucket=settings.import_bucket)
    s3.put_bucket_cors(
        Bucket=settings.import_bucket,
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedMethods": ["PUT", "GET"],
                    "AllowedOrigins": ["*"],
                    "AllowedHeaders": ["*"],
                    "MaxAgeSeconds": 3600,
                }
            ]
        },
    )
    wanted = {
        "QueueArn": queue_arn,
        "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "imports/"}]}},
    }
    current = s3.get_bucket_notification_configuration(Bucket=settings.import_bucket)
    if [queue.get("QueueArn") for queue in current.get("QueueConfigurations", [])] != [queue_arn]:
        # S3 sends the queue a test event when it is set (the handler drops it).
        s3.put_bucket_notification_configuration(
            Bucket=settings.import_bucket,
            NotificationConfiguration={"QueueConfigurations": [wanted]},
        )


def ensure_resources(services: Services) -> list[str]:
    """Tables, queues and the import bucket; returns the names of the tables created now."""
    services.bind_storage()
    created = models.create_tables()
    ensure_message_stream()
    ensure_queues(services)
    ensure_import_bucket(services)
    return created
