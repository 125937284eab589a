"""Throughput and AWS cost of the whole pipeline, on the local stack.

N clients (default 2,000) receive one mailing through schedule -> fan-out -> SQS ->
sender -> fake provider with latency L (default 50 ms), the counts following the
messages table's stream. Prints messages per second against the ceiling (provider
calls in flight / L), the AWS requests per delivered message counted with a botocore
event hook, the DynamoDB write units the emulator bills (index writes included,
``local/capacity.py``), and what a million messages would cost at the on-demand prices
below, by service and by operation.

Lambda is priced two ways. *Measured*: each function's invocations timed here, which
the local emulator inflates (moto answers in milliseconds to tens of milliseconds, one
write at a time). *Modelled for AWS*, the figure the cost goal is judged on: per
invocation, its sequential round trips counted in the run (requests sent together count
once) x ``AWS_ROUND_TRIP_MS``, plus the provider's latency for each round of calls, plus
the CPU time the invocation's thread used here, each rounded up to the millisecond as
Lambda bills.

    .venv/bin/python -m bench.pipeline [--clients 2000] [--latency-ms 50] [--pollers 4]
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.harness import (
    CALLS,
    CURRENT_INVOCATION,
    Invocation,
    install_counter,
    local_stack,
    seed_clients,
    wait_for,
)

# Published on-demand prices, us-east-1, USD (AWS price pages, 2025; free tiers ignored).
PRICE_LAMBDA_REQUEST = 0.20 / 1e6
PRICE_LAMBDA_GB_SECOND = 0.0000133334  # arm64 (.chalice/config.json); x86_64 is 0.0000166667
PRICE_SQS_REQUEST = 0.40 / 1e6  # standard queue, per 64 KB request
PRICE_DYNAMODB_WRITE_UNIT = 0.625 / 1e6  # on-demand write request unit
PRICE_DYNAMODB_READ_UNIT = 0.125 / 1e6  # on-demand read request unit
SENDER_MEMORY_GB = 256 / 1024
# Memory of each function (.chalice/config.json), GB.
MEMORY_GB = {"send": 256 / 1024, "count_messages": 256 / 1024, "dispatch": 512 / 1024}
# One DynamoDB or SQS request from Lambda in the same region, for the model. DynamoDB
# promises "single-digit millisecond performance at any scale" (its product page and
# developer guide); 10 ms is that bound, with TLS on a warm connection, rounded up.
AWS_ROUND_TRIP_MS = 10.0
# Messages in flight per sender invocation (chalicelib/services/sending.py).
CALLS_PER_INVOCATION = 10
BENCH_TOKEN = "bench-token"  # noqa: S105 - the fake provider's, not a secret


@dataclass
class FunctionTimes:
    """What one Lambda function did in the run."""

    invocations: int = 0
    seconds: float = 0.0  # measured wall time, on the emulator
    aws_rounds: int = 0
    provider_rounds: int = 0
    cpu_seconds: float = 0.0
    modelled_seconds: float = 0.0  # billed on AWS, per the model (1 ms granularity)


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
    functions: dict[str, FunctionTimes]
    counted_after_s: float = 0.0  # from the last send to the counts showing it

    @property
    def throughput(self) -> float:
        return self.delivered / self.seconds

    @property
    def ceiling(self) -> float:
        return self.pollers * CALLS_PER_INVOCATION / (self.latency_ms / 1000)

    @property
    def requests_per_message(self) -> float:
        return (self.dynamodb_requests + self.sqs_requests) / self.delivered

    def lambda_cost(self, *, modelled: bool) -> dict[str, float]:
        """Per function, per million messages."""
        scale = 1e6 / self.delivered
        cost = {}
        for name, times in self.functions.items():
            seconds = times.modelled_seconds if modelled else times.seconds
            cost[name] = (
                times.invocations * PRICE_LAMBDA_REQUEST
                + seconds * MEMORY_GB.get(name, SENDER_MEMORY_GB) * PRICE_LAMBDA_GB_SECOND
            ) * scale
        return cost

    def operation_cost(self) -> dict[str, float]:
        """DynamoDB and SQS per operation, per million messages."""
        scale = 1e6 / self.delivered
        cost: dict[str, float] = {}
        for name, count in self.requests.items():
            if name.startswith("sqs."):
                cost[name] = count * PRICE_SQS_REQUEST * scale
            else:
                cost[name] = (
                    self.write_units_by_operation.get(name, 0.0) * PRICE_DYNAMODB_WRITE_UNIT
                    + self.read_units_by_operation.get(name, 0.0) * PRICE_DYNAMODB_READ_UNIT
                ) * scale
        return cost

    def cost_per_million(self, *, modelled: bool = True) -> dict[str, float]:
        scale = 1e6 / self.delivered
        lambda_cost = sum(self.lambda_cost(modelled=modelled).values())
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


def _timed(app_module: Any, name: str, times: FunctionTimes, latency_ms: float) -> None:
    """Time each invocation of a handler of ``app.py`` and count its round trips."""
    original = getattr(app_module, name)
    lock = threading.Lock()

    def timed(event: Any, context: Any) -> Any:
        invocation = Invocation()
        token = CURRENT_INVOCATION.set(invocation)
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            return original(event, context)
        finally:
            CURRENT_INVOCATION.reset(token)
            wall, cpu = time.perf_counter() - started, time.thread_time() - cpu
            billed_ms = math.ceil(
                invocation.aws_rounds * AWS_ROUND_TRIP_MS
                + invocation.provider_rounds * latency_ms
                + cpu * 1000
            )
            with lock:
                times.invocations += 1
                times.seconds += wall
                times.aws_rounds += invocation.aws_rounds
                times.provider_rounds += invocation.provider_rounds
                times.cpu_seconds += cpu
                times.modelled_seconds += billed_ms / 1000

    setattr(app_module, name, timed)


def _count_provider_rounds() -> None:
    """Provider calls made together (a batch's, in parallel) are one round."""
    from chalicelib.provider import Provider  # noqa: PLC0415

    original = Provider.send

    def send(self: Any, *args: Any, **kwargs: Any) -> Any:
        invocation = CURRENT_INVOCATION.get()
        if invocation is not None:
            invocation.started("provider")
        try:
            return original(self, *args, **kwargs)
        finally:
            if invocation is not None:
                invocation.ended("provider")

    Provider.send = send  # type: ignore[method-assign]


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
            from chalicelib.storage.models import MessageModel  # noqa: PLC0415
            from local.lambda_runner import (  # noqa: PLC0415
                QueueRunner,
                ScheduleRunner,
                StreamRunner,
            )

            seed_clients(clients)
            functions = {name: FunctionTimes() for name in ("send", "count_messages", "dispatch")}
            for name, times in functions.items():
                _timed(app_module, name, times, latency_ms)
            _count_provider_rounds()
            runners = [
                QueueRunner(concurrency=pollers),
                ScheduleRunner(tick_seconds=1),
                # As the AWS mapping batches: a batch every batching window (or 1,000
                # records), not the local stack's 0.5 s (a shorter wait for people).
                StreamRunner(poll_seconds=app_module.COUNT_BATCHING_WINDOW_SECONDS),
            ]
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
            counted_at = datetime.now(UTC)
            with CALLS.paused():
                last_sent = max(
                    (m.sent_at for m in MessageModel.query(task.id) if m.sent_at),
                    default=counted_at,
                )
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
                functions=functions,
                counted_after_s=(counted_at - last_sent).total_seconds(),
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
    cost = result.cost_per_million(modelled=True)
    measured = result.cost_per_million(modelled=False)
    n = result.delivered
    lines = [
        f"clients {result.clients}, provider latency {result.latency_ms:g} ms, "
        f"{result.pollers} queue pollers x {CALLS_PER_INVOCATION} calls in flight",
        f"delivered {n} in {result.seconds:.1f} s: "
        f"{result.throughput:.0f} msg/s; ceiling {result.ceiling:.0f} msg/s; "
        f"ratio {result.throughput / result.ceiling:.2f}",
        f"AWS requests per delivered message: {result.requests_per_message:.2f} "
        f"(DynamoDB {result.dynamodb_requests / n:.2f}, SQS {result.sqs_requests / n:.2f})",
        "  by operation: "
        + ", ".join(
            f"{name} {count / n:.3f}"
            for name, count in sorted(result.requests.items(), key=lambda kv: -kv[1])
        ),
        f"counts caught up {result.counted_after_s:.1f} s after the last send "
        "(the stream's batching window and the counting handler)",
        f"DynamoDB write units per message: {result.write_units / n:.2f}, "
        f"read units {result.read_units / n:.2f}",
        "  write units by operation: " + _per_message(result.write_units_by_operation, n),
        "  write units by table and index: " + _per_message(result.write_units_by_table, n),
        "  read units by operation: " + _per_message(result.read_units_by_operation, n),
        "Lambda, per function: invocations per message; sequential AWS round trips and "
        "provider rounds per invocation; measured s vs modelled s per invocation",
    ]
    for name, times in result.functions.items():
        if not times.invocations:
            continue
        k = times.invocations
        lines.append(
            f"  {name}: {k / n:.3f}/msg; {times.aws_rounds / k:.1f} AWS rounds, "
            f"{times.provider_rounds / k:.1f} provider rounds, cpu {times.cpu_seconds / k:.3f} s;"
            f" measured {times.seconds / k:.3f} s, modelled {times.modelled_seconds / k:.3f} s"
        )
    lines += [
        "cost per million messages (USD), Lambda modelled for AWS "
        f"({AWS_ROUND_TRIP_MS:g} ms a round trip): Lambda {cost['lambda']:.2f}, "
        f"SQS {cost['sqs']:.2f}, DynamoDB {cost['dynamodb']:.2f}, total {cost['total']:.2f}",
        "  Lambda by function (modelled): "
        + _costs(result.lambda_cost(modelled=True))
        + f"; measured on the emulator: {measured['lambda']:.2f} "
        f"(total with it {measured['total']:.2f})",
        "  DynamoDB and SQS by operation: " + _costs(result.operation_cost()),
    ]
    return lines


def _costs(values: dict[str, float]) -> str:
    ordered = sorted(values.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{name} {value:.3f}" for name, value in ordered if value >= 0.0005)


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
