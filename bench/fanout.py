"""Fan-out rate: clients selected and enqueued per second, on the local stack.

Seeds N matching clients (default 20,000), then lets the dispatcher page through them
into the send queue while stand-in senders take jobs off the queue as fast as it gives
them (so the queue stays as shallow as in a real run), and reports the rate.

    .venv/bin/python -m bench.fanout [--clients 20000] [--drainers 4]
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.harness import CALLS, install_counter, local_stack, seed_clients


@dataclass
class FanoutResult:
    clients: int
    seconds: float
    enqueued: int
    runs: int
    requests: int

    @property
    def rate(self) -> float:
        return self.enqueued / self.seconds


def _drain(services: Any, stop: threading.Event, taken: list[int]) -> None:
    sqs, url = services.queue.client, services.queue.url
    with CALLS.paused():
        while not stop.is_set():
            messages = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
            if messages:
                sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(messages)
                    ],
                )
                taken.append(len(messages))


def run(clients: int = 20_000, drainers: int = 4) -> FanoutResult:
    install_counter()
    with local_stack({"DISPATCH_BUDGET_SECONDS": "600"}) as stack:
        from chalicelib.domain.tasks import TaskPlan  # noqa: PLC0415

        seed_clients(clients)
        services = stack.services
        now = datetime.now(UTC)
        task = services.tasks.create(
            TaskPlan(
                start=now + timedelta(seconds=2),
                end=now + timedelta(hours=1),
                text="Fan-out benchmark",
                codes=("900",),
                tags=(),
                window=None,
            )
        )
        time.sleep(2.1)
        stop, taken = threading.Event(), list[int]()
        threads = [
            threading.Thread(target=_drain, args=(services, stop, taken), daemon=True)
            for _ in range(drainers)
        ]
        for thread in threads:
            thread.start()
        CALLS.reset()
        started = time.perf_counter()
        enqueued, runs = 0, 0
        while True:
            report = services.dispatcher.dispatch_due(services.settings.dispatch_budget_seconds)
            enqueued += report.enqueued
            runs += 1
            record = services.task_repository.get(task.id)
            if record is None or record.fanout.done:
                break
        seconds = time.perf_counter() - started
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
        return FanoutResult(clients, seconds, enqueued, runs, CALLS.total())


def report(result: FanoutResult) -> list[str]:
    return [
        f"fan-out of {result.clients} matching clients: {result.enqueued} jobs in "
        f"{result.seconds:.1f} s ({result.runs} dispatcher run(s)): {result.rate:.0f} clients/s; "
        f"{result.requests / max(result.enqueued, 1):.3f} AWS requests per client"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20_000)
    parser.add_argument("--drainers", type=int, default=4)
    args = parser.parse_args()
    print("\n".join(report(run(args.clients, args.drainers))))


if __name__ == "__main__":
    main()
