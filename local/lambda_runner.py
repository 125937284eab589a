"""What Lambda does in AWS, done on a developer's machine.

``chalice local`` serves HTTP routes only, so these parts drive the other handlers of
``app.py`` exactly as Lambda would: the schedule fires the dispatcher every
``TICK_SECONDS``; queue pollers long-poll the emulated SQS queues, hand each batch to
the sender (or the fan-out worker) as an SQS event, and delete only the jobs the handler
did not report in ``batchItemFailures`` (partial batch responses); and a stream poller
reads the messages table's stream (moto emulates DynamoDB Streams) shard by shard, in
order, and hands each batch to the counting handler as Lambda's event source mapping
does (with the ``shardId`` its tumbling window adds), moving on only past what was not
reported failed. Delays are SQS's own.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from datetime import datetime as _datetime
from typing import Any

from chalicelib import logs

log = logs.get_logger("local.runner")

LONG_POLL_SECONDS = 1  # short, so that a stop request is honoured promptly
BATCH_SIZE = 10


@dataclass
class LambdaContext:
    function_name: str
    timeout_seconds: float
    aws_request_id: str = ""

    def __post_init__(self) -> None:
        self.aws_request_id = self.aws_request_id or str(uuid.uuid4())
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def scheduled_event() -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:000000000000:rule/notify-local-dispatch"],
        "detail": {},
    }


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": message.get("MessageAttributes", {}),
                "md5OfBody": message.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for message in messages
        ]
    }


class _Loop:
    """A daemon thread running ``step`` until stopped."""

    name = "loop"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _spawn(self, count: int) -> None:
        for index in range(count):
            thread = threading.Thread(target=self._run, name=f"{self.name}-{index}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:
                log.exception(f"{self.name} step failed")
                self._stop.wait(1)

    def start(self) -> None:
        raise NotImplementedError

    def step(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def alive(self) -> bool:
        return all(thread.is_alive() for thread in self._threads)


class ScheduleRunner(_Loop):
    """Fires the ``dispatch`` schedule handler every ``tick`` seconds."""

    name = "schedule (dispatcher)"

    def __init__(self, tick_seconds: float) -> None:
        super().__init__()
        self._tick = tick_seconds

    def start(self) -> None:
        self._spawn(1)

    def step(self) -> None:
        import app as app_module  # noqa: PLC0415 - loaded after the environment is set

        started = time.monotonic()
        app_module.dispatch(scheduled_event(), LambdaContext("dispatch", timeout_seconds=300))
        self._stop.wait(max(0.0, self._tick - (time.monotonic() - started)))


class QueueRunner(_Loop):
    """``concurrency`` pollers feeding a queue's handler, as Lambda's SQS mapping does: the
    send queue's ``send`` (the default), the fan-out queue's ``fan_out`` or the import
    queue's ``import_files`` (which gets the bucket's "object created" events from the
    emulator's S3, as from S3 in AWS)."""

    def __init__(
        self,
        concurrency: int,
        *,
        handler: str = "send",
        batch_size: int = BATCH_SIZE,
        timeout_seconds: float = 30,
    ) -> None:
        super().__init__()
        self.name = f"queue ({handler})"
        self._concurrency = concurrency
        self._handler = handler
        self._batch_size = batch_size
        self._timeout = timeout_seconds
        self._queue_url = ""
        self._queue_arn = ""

    def _queue(self) -> Any:
        import app as app_module  # noqa: PLC0415 - loaded after the environment is set

        wired = app_module.services()
        if self._handler == "import_files":
            return wired.import_queue
        return wired.fanout_queue if self._handler == "fan_out" else wired.queue

    def start(self) -> None:
        queue = self._queue()
        self._queue_url = queue.url
        self._queue_arn = queue.client.get_queue_attributes(
            QueueUrl=self._queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        self._spawn(self._concurrency)

    def step(self) -> None:
        import app as app_module  # noqa: PLC0415

        wired = app_module.services()
        sqs = self._queue().client
        received = sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=self._batch_size,
            WaitTimeSeconds=LONG_POLL_SECONDS,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not received:
            return
        event = sqs_event(received, self._queue_arn, wired.settings.aws_region)
        try:
            handler = getattr(app_module, self._handler)
            answer = handler(event, LambdaContext(self._handler, timeout_seconds=self._timeout))
        except Exception:
            # A failed invocation: Lambda deletes nothing; the jobs come back later.
            log.exception(
                f"{self._handler} handler failed; the batch returns after the visibility timeout"
            )
            return
        failed = {item["itemIdentifier"] for item in (answer or {}).get("batchItemFailures", [])}
        done = [m for m in received if m["MessageId"] not in failed]
        if done:
            sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
                ],
            )


STREAM_BATCH_SIZE = 1000
STREAM_POLL_SECONDS = 0.5


def stream_event(records: list[dict[str, Any]], shard_id: str, stream_arn: str) -> dict[str, Any]:
    """Records from GetRecords as Lambda hands them over (times as epoch seconds)."""
    converted = []
    for record in records:
        body = dict(record["dynamodb"])
        created = body.get("ApproximateCreationDateTime")
        if isinstance(created, _datetime):
            body["ApproximateCreationDateTime"] = created.timestamp()
        body.setdefault("SizeBytes", 1)
        converted.append({**record, "dynamodb": body, "eventSourceARN": stream_arn})
    return {"Records": converted, "shardId": shard_id, "eventSourceARN": stream_arn}


class StreamPoller:
    """Lambda's event source mapping on the messages table's stream, for one process:
    each shard from its start (TRIM_HORIZON), a parent before its children; a checkpoint
    per shard that moves past the records the handler did not report failed."""

    def __init__(self, handler: Any, batch_size: int = STREAM_BATCH_SIZE) -> None:
        import app as app_module  # noqa: PLC0415 - loaded after the environment is set
        from chalicelib.storage.models import MessageModel  # noqa: PLC0415

        wired = app_module.services()
        wired.bind_storage()
        import boto3  # noqa: PLC0415

        region = wired.settings.aws_region
        self._streams = boto3.client(
            "dynamodbstreams",
            region_name=region,
            # botocore names an account's own streams endpoint, which moto's in-process
            # mock (the tests) does not know; the regional one is the same service.
            endpoint_url=wired.settings.aws_endpoint_url
            or f"https://streams.dynamodb.{region}.amazonaws.com",
        )
        self._table = MessageModel.Meta.table_name
        self._handler = handler
        self._batch_size = batch_size
        self._checkpoints: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def _stream_arn(self) -> str | None:
        streams = self._streams.list_streams(TableName=self._table).get("Streams", [])
        return str(streams[-1]["StreamArn"]) if streams else None

    def drain(self) -> int:
        """Batches until the stream has nothing new: the counts have caught up."""
        total = 0
        while True:
            before = dict(self._checkpoints)
            handled = self.poll()
            total += handled
            if not handled or self._checkpoints == before:
                # Nothing new, or nothing taken past where each shard stood (the handler
                # keeps reporting the same first record failed): no further progress now.
                return total

    def poll(self) -> int:
        """One batch of each shard's new records to the handler; the records handled."""
        with self._lock:
            arn = self._stream_arn()
            if arn is None:
                return 0
            shards = self._streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
            handled = 0
            for shard in shards:  # DescribeStream lists parents before their children
                handled += self._poll_shard(arn, shard["ShardId"])
            return handled

    def _poll_shard(self, arn: str, shard_id: str) -> int:
        """One batch from the shard's checkpoint; the records the handler took."""
        after = self._checkpoints.get(shard_id)
        start: dict[str, Any] = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after}
            if after
            else {"ShardIteratorType": "TRIM_HORIZON"}
        )
        iterator = self._streams.get_shard_iterator(StreamArn=arn, ShardId=shard_id, **start)
        records = self._streams.get_records(
            ShardIterator=iterator["ShardIterator"], Limit=self._batch_size
        ).get("Records", [])
        if not records:
            return 0
        event = stream_event(records, shard_id, arn)
        answer = self._handler(event, LambdaContext("count_messages", timeout_seconds=60))
        reported = (answer or {}).get("batchItemFailures", [])
        failed = [item["itemIdentifier"] for item in reported]
        sequences = [str(r["dynamodb"]["SequenceNumber"]) for r in records]
        if failed:
            # Lambda starts again at the failed record: keep the checkpoint before it.
            first = sequences.index(min(failed, key=int))
            if first:
                self._checkpoints[shard_id] = sequences[first - 1]
            return first
        self._checkpoints[shard_id] = sequences[-1]
        return len(records)


class StreamRunner(_Loop):
    """Feeds the ``count_messages`` handler from the messages table's stream."""

    name = "stream (counts)"

    def __init__(self, poll_seconds: float = STREAM_POLL_SECONDS) -> None:
        super().__init__()
        self._poll_seconds = poll_seconds
        self._poller: StreamPoller | None = None

    def start(self) -> None:
        import app as app_module  # noqa: PLC0415

        def handler(event: dict[str, Any], context: LambdaContext) -> Any:
            return app_module.count_messages(event, context)  # looked up at each call

        self._poller = StreamPoller(handler)
        self._spawn(1)

    def step(self) -> None:
        assert self._poller is not None
        # Like the mapping's batching window: wait, unless a full batch is ready already.
        if self._poller.poll() < STREAM_BATCH_SIZE:
            self._stop.wait(self._poll_seconds)

    def stop(self) -> None:
        super().stop()
        if self._poller is not None:
            try:  # count what was written up to now: a restart starts a new stream shard
                self._poller.drain()
            except Exception:
                log.exception("could not read the stream's last records")
