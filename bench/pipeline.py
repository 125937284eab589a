"""Throughput and AWS cost of the whole pipeline, on the local stack.

N clients (default 2,000) receive one mailing through schedule -> fan-out -> SQS ->
sender -> fake provider with latency L (default 50 ms). Prints messages per second
against the ceiling (provider calls in flight / L), the AWS requests per delivered
message counted with a botocore event hook, and what a million messages would cost at
the on-demand prices below.

    .venv/bin/python -m bench.pipeline [--clients 2000] [--latency-ms 50] [--pollers 4]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.harness import CALLS, install_counter, local_stack, seed_clients, wait_for

# Published on-demand prices, us-east-1, USD (AWS price pages, 2025; free tiers ignored).
PRICE_LAMBDA_REQUEST = 0.20 / 1e6
PRICE_LAMBDA_GB_SECOND = 0.0000133334  # arm64 (.chalice/config.json); x86_64 is 0.0000166667
PRICE_SQS_REQUEST = 0.40 / 1e6  # standard queue, per 64 KB request
PRICE_DYNAMODB_WRITE_UNIT = 0.625 / 1e6  # on-demand write request unit
PRICE_DYNAMODB_READ_UNIT = 0.125 / 1e6  # on-demand read request unit
SENDER_MEMORY_GB = 256 / 1024
# Messages in flight per sender invocation (chalicelib/services/sending.py).
CALLS_PER_INVOCATION = 10
BENCH_TOKEN = "bench-token"  # noqa: S105 - the fake provider's, not a secret


@dataclass
class PipelineResult:
    clients: int
    latency_ms: float
    pollers: int
    seconds: float
    delivered: int
    requests: dict[str, int]
    dynamodb_requests: int
    sqs_requests: int
    write_units: float
    read_units: float
    write_units_by_operation: dict[str, float]
    read_units_by_operation: dict[str, float]
    write_units_by_table: dict[str, float]
    sender_invocations: int
    sender_seconds: float

    @property
    def throughput(self) -> float:
        return self.delivered / self.seconds

    @property
    def ceiling(self) -> float:
        return self.pollers * CALLS_PER_INVOCATION / (self.latency_ms / 1000)

    @property
    def requests_per_message(self) -> float:
        return (self.dynamodb_requests + self.sqs_requests) / self.delivered

    def cost_per_million(self) -> dict[str, float]:
        scale = 1e6 / self.delivered
        lambda_cost = (
            self.sender_invocations * PRICE_LAMBDA_REQUEST
            + self.sender_seconds * SENDER_MEMORY_GB * PRICE_LAMBDA_GB_SECOND
        ) * scale
        sqs_cost = self.sqs_requests * PRICE_SQS_REQUEST * scale
        dynamo_cost = (
            self.write_units * PRICE_DYNAMODB_WRITE_UNIT
            + self.read_units * PRICE_DYNAMODB_READ_UNIT
        ) * scale
        return {
            "lambda": lambda_cost,
            "sqs": sqs_cost,
            "dynamodb": dynamo_cost,
            "total": lambda_cost + sqs_cost + dynamo_cost,
        }


def _timed_sender(app_module: Any, stats: dict[str, float]) -> None:
    """Time each sender invocation (Lambda bills its duration)."""
    original = app_module.send

    def timed(event: Any, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(event, context)
        finally:
            stats["invocations"] += 1
            stats["seconds"] += time.perf_counter() - started

    app_module.send = timed


def run(clients: int = 2000, latency_ms: float = 50.0, pollers: int = 4) -> PipelineResult:
    install_counter()
    from local.fake_provider import FakeProvider, FakeProviderState  # noqa: PLC0415

    provider = FakeProvider(
        state=FakeProviderState(latency_ms=latency_ms, token=BENCH_TOKEN), quiet=True
    )
    provider.start()
    env = {
        "SENDER_URL": provider.url,
        "SENDER_TOKEN": BENCH_TOKEN,
        "DISPATCH_BUDGET_SECONDS": "30",
    }
    try:
        with local_stack(env) as stack:
            import app as app_module  # noqa: PLC0415
            from chalicelib.domain.tasks import TaskPlan  # noqa: PLC0415
            from chalicelib.storage import messages as message_store  # noqa: PLC0415
            from local.lambda_runner import QueueRunner, ScheduleRunner  # noqa: PLC0415

            seed_clients(clients)
            sender_stats = {"invocations": 0.0, "seconds": 0.0}
            _timed_sender(app_module, sender_stats)
            runners = [QueueRunner(concurrency=pollers), ScheduleRunner(tick_seconds=1)]
            for runner in runners:
                runner.start()
                stack.parts.append(runner)
            CALLS.reset()
            now = datetime.now(UTC)
            started = time.perf_counter()
            task = stack.services.tasks.create(
                TaskPlan(
                    start=now,
                    end=now + timedelta(hours=1),
                    text="Benchmark",
                    codes=("900",),
                    tags=(),
                    window=None,
                )
            )

            def delivered() -> int:
                with CALLS.paused():
                    return message_store.counts([task.id])[task.id].sent

            progress = {"sent": 0, "at": time.monotonic()}

            def done_or_stuck() -> bool:
                sent = delivered()
                if sent != progress["sent"]:
                    progress.update(sent=sent, at=time.monotonic())
                return sent >= clients or time.monotonic() - progress["at"] > 30

            wait_for(done_or_stuck, timeout=900, poll=0.05)
            seconds = time.perf_counter() - started
            sent = delivered()
            if sent < clients:
                _explain_missing(task.id)
            requests = dict(CALLS.requests)
            result = PipelineResult(
                clients=clients,
                latency_ms=latency_ms,
                pollers=pollers,
                seconds=seconds,
                delivered=sent,
                requests=requests,
                dynamodb_requests=CALLS.total("dynamodb"),
                sqs_requests=CALLS.total("sqs"),
                write_units=CALLS.write_units,
                read_units=CALLS.read_units,
                write_units_by_operation=dict(CALLS.write_units_by_operation),
                read_units_by_operation=dict(CALLS.read_units_by_operation),
                write_units_by_table=dict(CALLS.write_units_by_table),
                sender_invocations=int(sender_stats["invocations"]),
                sender_seconds=sender_stats["seconds"],
            )
            # The polls that counted delivery are the benchmark's, not the pipeline's.
            return result
    finally:
        provider.stop()


def _explain_missing(task_id: int) -> None:
    from chalicelib.storage.models import MessageModel  # noqa: PLC0415

    stuck = [m for m in MessageModel.query(task_id) if m.status != "sent"]
    print(f"not sent: {len(stuck)}")
    for message in stuck[:10]:
        print(
            f"  client {message.client_id}: {message.status} gen={message.job_gen} "
            f"attempts={message.attempts} wake={message.wake_ms} error={message.last_error}"
        )


def report(result: PipelineResult) -> list[str]:
    cost = result.cost_per_million()
    return [
        f"clients {result.clients}, provider latency {result.latency_ms:g} ms, "
        f"{result.pollers} queue pollers x {CALLS_PER_INVOCATION} calls in flight",
        f"delivered {result.delivered} in {result.seconds:.1f} s: "
        f"{result.throughput:.0f} msg/s; ceiling {result.ceiling:.0f} msg/s; "
        f"ratio {result.throughput / result.ceiling:.2f}",
        f"AWS requests per delivered message: {result.requests_per_message:.2f} "
        f"(DynamoDB {result.dynamodb_requests / result.delivered:.2f}, "
        f"SQS {result.sqs_requests / result.delivered:.2f})",
        "  by operation: "
        + ", ".join(
            f"{name} {count / result.delivered:.3f}"
            for name, count in sorted(result.requests.items(), key=lambda kv: -kv[1])
        ),
        f"DynamoDB write units per message: {result.write_units / result.delivered:.2f}, "
        f"read units {result.read_units / result.delivered:.2f}",
        "  write units by operation: "
        + _per_message(result.write_units_by_operation, result.delivered),
        "  write units by table and index: "
        + _per_message(result.write_units_by_table, result.delivered),
        "  read units by operation: "
        + _per_message(result.read_units_by_operation, result.delivered),
        f"cost per million messages (USD): Lambda {cost['lambda']:.2f}, SQS {cost['sqs']:.2f}, "
        f"DynamoDB {cost['dynamodb']:.2f}, total {cost['total']:.2f}",
    ]


def _per_message(values: dict[str, float], delivered: int) -> str:
    ordered = sorted(values.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{name} {n / delivered:.3f}" for name, n in ordered if n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--pollers", type=int, default=4)
    args = parser.parse_args()
    result = run(args.clients, args.latency_ms, args.pollers)
    print("\n".join(report(result)))


if __name__ == "__main__":
    main()
