"""Fan-out: clients selected and queued per second with 1 to N parallel workers on the
local stack, and a model of a 1,000,000-client fan-out on AWS (issue 17).

Seeds N matching clients (default 4,000), then for each worker count starts a mailing to
all of them: the start cuts the audience into segments (``chalicelib/domain/fanout.py``)
and queues one fan-out job per segment; W threads play Lambda's fan-out workers
(``app.fan_out``: one job at a time from the fan-out queue). Every AWS request waits a
network latency first (``--latency-ms``), and the send queue is a stand-in that counts
its requests (``StandInSendQueue``). Reports the rate, the speed-up over one worker, and
the AWS requests per client, which feed the AWS model.

    .venv/bin/python -m bench.fanout [--clients 4000] [--workers 1,2,4] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.harness import CALLS, install_counter, install_latency, local_stack, seed_clients

SEGMENTS = 16  # segments per mailing: enough for every worker count here

# --- the AWS model's inputs -----------------------------------------------------------
# Latency of one request as a worker sees it, in seconds. DynamoDB: AWS documents
# "single-digit millisecond" responses for item operations at any scale (the DynamoDB
# developer guide, "What is Amazon DynamoDB?"); 10 ms is taken for an item request or a
# one-page query, 30 ms for a transaction of up to 100 items. SQS publishes no latency
# figure; 20 ms a request is assumed (a round trip within a region plus SQS's redundant
# write). A worker makes its requests one after another.
AWS_LATENCY = {
    "dynamodb.GetItem": 0.010,
    "dynamodb.BatchGetItem": 0.010,
    "dynamodb.UpdateItem": 0.010,
    "dynamodb.PutItem": 0.010,
    "dynamodb.Query": 0.010,
    "dynamodb.Scan": 0.010,
    "dynamodb.TransactWriteItems": 0.030,
    "sqs.SendMessageBatch": 0.020,
    "sqs.SendMessage": 0.020,
    "sqs.GetQueueAttributes": 0.020,
    "sqs.ReceiveMessage": 0.020,
    "sqs.DeleteMessage": 0.020,
    "sqs.GetQueueUrl": 0.020,
}
DEFAULT_LATENCY = 0.020
# The limits the model relies on. Lambda: the fan-out queue's event source runs at most
# FANOUT_WORKERS (app.py) at once; SQS standard queues take "a nearly unlimited number of
# API calls per second" (SQS developer guide, quotas). DynamoDB: every partition takes at
# most 1,000 write units a second (developer guide, "Partitions and data distribution"),
# and all of one task's messages share its partition key (task_id), so until DynamoDB
# splits that key's items across partitions by sort key ("split for heat", automatic but
# not immediate), one task's messages are created at most this fast.
PARTITION_WRITE_UNITS = 1000
TARGET_CLIENTS = 1_000_000
TARGET_SECONDS = 300


@dataclass
class FanoutResult:
    clients: int
    workers: int
    seconds: float
    enqueued: int
    requests: Counter[str]
    write_units: float

    @property
    def rate(self) -> float:
        return self.enqueued / self.seconds


class StandInSendQueue:
    """The send queue, as the fan-out sees it, without the emulated SQS: that one slows as
    it deepens (each receive walks the queue) and would take the CPU the fan-out is
    measured on. Each request a real queue would take is counted (a SendMessageBatch per
    ten jobs, a GetQueueAttributes per look at the depth) and waits the network latency;
    the senders keep the queue empty (depth 0)."""

    def __init__(self, latency_seconds: float) -> None:
        self._latency = latency_seconds

    def _request(self, operation: str) -> None:
        CALLS.record("sqs", operation, {}, {})
        time.sleep(self._latency)

    def send(self, jobs: Any, delay_seconds: float = 0, *, now_ms: int | None = None) -> None:
        for _ in range(0, len(jobs), 10):
            self._request("SendMessageBatch")

    def depth(self) -> int:
        self._request("GetQueueAttributes")
        return 0


def _work(services: Any, stop: threading.Event) -> None:
    """One fan-out worker, as Lambda's SQS mapping runs ``app.fan_out`` (batch size 1)."""
    queue = services.fanout_queue
    while not stop.is_set():
        received = queue.client.receive_message(
            QueueUrl=queue.url, MaxNumberOfMessages=1, WaitTimeSeconds=1
        ).get("Messages", [])
        for message in received:
            services.dispatcher.fanout.run_body(message["Body"], 30.0)
            queue.client.delete_message(QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"])


def _one_run(services: Any, clients: int, workers: int) -> FanoutResult:
    from chalicelib.domain.tasks import TaskPlan, TaskStatus  # noqa: PLC0415

    now = datetime.now(UTC)
    with CALLS.paused():
        task = services.task_repository.create(
            TaskPlan(
                start=now,
                end=now + timedelta(hours=1),
                text=f"Fan-out benchmark, {workers} worker(s)",
                codes=("900",),
                tags=(),
                window=None,
            ),
            TaskStatus.SCHEDULED,
            now,
        )
    stop = threading.Event()
    threads: list[threading.Thread] = []
    CALLS.reset()
    started = time.perf_counter()
    enqueued = services.dispatcher.start_task(task.id).enqueued
    threads += [
        threading.Thread(target=_work, args=(services, stop), daemon=True) for _ in range(workers)
    ]
    for thread in threads:
        thread.start()
    while True:
        with CALLS.paused():
            record = services.task_repository.get(task.id)
        if record is None or record.fanout.done:
            break
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    with CALLS.paused():
        # The messages themselves: the counts follow the table's stream, which nothing
        # drains here.
        from chalicelib.storage.models import MessageModel  # noqa: PLC0415

        enqueued = MessageModel.count(task.id)
    return FanoutResult(
        clients, workers, seconds, enqueued, Counter(CALLS.requests), CALLS.write_units
    )


def run(
    clients: int = 4000, workers: tuple[int, ...] = (1, 2, 4), latency_ms: float = 20.0
) -> list[FanoutResult]:
    install_counter()
    if latency_ms:
        install_latency(latency_ms / 1000)
    env = {
        "QUEUE_AHEAD_LIMIT": "1000000",  # the fan-out's own speed, not the senders'
        "FANOUT_SEGMENT_CLIENTS": str(max(1, math.ceil(clients / SEGMENTS))),
        "FANOUT_MAX_SEGMENTS": str(SEGMENTS),
        "FANOUT_PAGE_SIZE": "95",
    }
    with local_stack(env) as stack:
        seed_clients(clients)
        stand_in = StandInSendQueue(latency_ms / 1000)
        stack.services.dispatcher._queue = stack.services.dispatcher.fanout._queue = stand_in
        return [_one_run(stack.services, clients, count) for count in workers]


def model(result: FanoutResult, fanout_workers: int) -> list[str]:
    """A 1,000,000-client fan-out on AWS from the measured request mix."""
    per_client = {op: n / result.enqueued for op, n in result.requests.items()}
    seconds_per_client = sum(
        share * AWS_LATENCY.get(op, DEFAULT_LATENCY) for op, share in per_client.items()
    )
    worker_rate = 1 / seconds_per_client
    needed = TARGET_CLIENTS / TARGET_SECONDS
    workers_needed = math.ceil(needed / worker_rate)
    capacity = worker_rate * fanout_workers
    units_per_client = result.write_units / result.enqueued
    partition_rate = PARTITION_WRITE_UNITS / units_per_client
    binding = min(capacity, partition_rate)
    bound_seconds = TARGET_CLIENTS / binding
    verdict = "meets" if bound_seconds <= TARGET_SECONDS else "misses"
    return [
        "AWS model of a 1,000,000-client fan-out (latencies and limits in bench/fanout.py):",
        f"  per client {sum(per_client.values()):.3f} requests, "
        f"{seconds_per_client * 1000:.2f} ms of sequential AWS time: "
        f"{worker_rate:.0f} clients/s per worker",
        f"  {needed:.0f} clients/s for 5 minutes needs {workers_needed} workers; "
        f"{fanout_workers} allowed (FANOUT_WORKERS): {capacity:.0f} clients/s, "
        f"{TARGET_CLIENTS / capacity:.0f} s",
        f"  DynamoDB: {units_per_client:.2f} write units per client on one partition key "
        f"(1,000 a second per partition): {partition_rate:.0f} clients/s, "
        f"{TARGET_CLIENTS / partition_rate / 60:.1f} minutes until split for heat spreads it",
        f"  bound: {binding:.0f} clients/s, 1,000,000 in {bound_seconds / 60:.1f} minutes "
        f"({verdict} the 5-minute goal)",
    ]


def report(results: list[FanoutResult], latency_ms: float) -> list[str]:
    import app as app_module  # noqa: PLC0415

    first = results[0]
    lines = [
        f"fan-out of {first.clients} matching clients in {SEGMENTS} segments on the local "
        f"stack, each AWS request delayed {latency_ms:g} ms (AWS's network; 0: the bare "
        "emulator, which applies DynamoDB writes one at a time and is CPU-bound):"
    ]
    for result in results:
        lines.append(
            f"  {result.workers} worker(s): {result.seconds:.1f} s, {result.rate:.0f} clients/s, "
            f"speed-up {result.rate / first.rate:.2f}; "
            f"{sum(result.requests.values()) / max(result.enqueued, 1):.3f} AWS requests "
            "per client"
        )
    mix = ", ".join(f"{op} {n / first.enqueued:.3f}" for op, n in first.requests.most_common())
    lines.append(f"  by operation (1 worker): {mix}")
    return lines + model(first, app_module.FANOUT_WORKERS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    counts = tuple(int(n) for n in args.workers.split(","))
    results = run(args.clients, counts, args.latency_ms)
    print("\n".join(report(results, args.latency_ms)))


if __name__ == "__main__":
    main()
