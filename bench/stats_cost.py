"""Stats cost growth: both stats calls for a task with 100 messages and one with 10,000.

Counts come from maintained counters and messages are read one page at a time, so the
work of either call should not depend on how many messages a task has: the ratio of
the two should stay near 1. Runs in-process on moto (no network), through the same
Chalice handler the API uses, and prints two measures for each call:

- DynamoDB work: requests made and items read (what DynamoDB bills and what bounds
  its latency), counted on the responses;
- wall time on the emulator. Moto answers a Query by walking the whole partition, so
  for the detail call (one task's messages) its time grows with the partition even
  though DynamoDB reads only the page asked for: read that column with this in mind.

    .venv/bin/python -m bench.stats_cost [--small 100] [--large 10000] [--repeat 40]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _environment() -> None:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    os.environ.update(config["stages"]["local"]["environment_variables"])
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "LOG_LEVEL": "WARNING",
        }
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)


def _seed_task(services: Any, messages: int) -> int:
    """A running task with ``messages`` pending messages, written as the fan-out does."""
    from chalicelib.domain.messages import message_id  # noqa: PLC0415
    from chalicelib.domain.tasks import TaskPlan  # noqa: PLC0415 - after the environment
    from chalicelib.storage import messages as store  # noqa: PLC0415
    from chalicelib.storage.models import CounterModel, MessageModel  # noqa: PLC0415

    now = services.clock()
    task = services.tasks.create(
        TaskPlan(
            start=now + timedelta(days=1),
            end=now + timedelta(days=2),
            text="bench",
            codes=(),
            tags=(),
            window=None,
        )
    )
    # Bulk-load the messages and set the counters to match: the write path is not what
    # this measures, and the fan-out's transactions are slow on the emulator.
    shards = [0] * store.COUNTER_SHARDS
    with MessageModel.batch_write() as batch:
        for client_id in range(1, messages + 1):
            batch.save(
                MessageModel(
                    task.id,
                    client_id,
                    id=message_id(task.id, client_id),
                    status="pending",
                    created_at=now,
                    attempts=0,
                    job_gen=0,
                )
            )
            shards[client_id % store.COUNTER_SHARDS] += 1
    for shard, count in enumerate(shards):
        CounterModel(store.counter_name(task.id, shard)).update(
            actions=[CounterModel.total.add(count), CounterModel.pending.add(count)]
        )
    return int(task.id)


class DynamoWork:
    """Counts DynamoDB requests and the items they read, from the responses."""

    def __init__(self) -> None:
        self.requests = 0
        self.items = 0

    def install(self) -> None:
        from pynamodb.connection.base import Connection  # noqa: PLC0415

        original = Connection._make_api_call
        work = self

        def counting(
            conn: Any, operation_name: str, operation_kwargs: Any, *a: Any, **k: Any
        ) -> Any:
            response = original(conn, operation_name, operation_kwargs, *a, **k)
            work.requests += 1
            if operation_name in {"Query", "Scan"}:
                work.items += int(response.get("ScannedCount", 0))
            elif operation_name == "BatchGetItem":
                work.items += sum(len(v) for v in response.get("Responses", {}).values())
            elif operation_name == "GetItem":
                work.items += 1 if response.get("Item") else 0
            return response

        Connection._make_api_call = counting  # type: ignore[method-assign,assignment]


WORK = DynamoWork()


def _time_call(client: Any, path: str, key: str, repeat: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {key}"}
    samples = []
    requests_before, items_before = WORK.requests, WORK.items
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.http.get(path, headers=headers)
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200, response.body
    return {
        "seconds": statistics.median(samples),
        "requests": (WORK.requests - requests_before) / repeat,
        "items": (WORK.items - items_before) / repeat,
    }


def measure(sizes: tuple[int, int], repeat: int) -> dict[int, dict[str, dict[str, float]]]:
    _environment()
    WORK.install()
    from chalice.test import Client  # noqa: PLC0415
    from moto import mock_aws  # noqa: PLC0415

    import app as app_module  # noqa: PLC0415
    from chalicelib.bootstrap import bootstrap  # noqa: PLC0415
    from local.gateway import SpecLocalGateway  # noqa: PLC0415
    from local.resources import ensure_resources  # noqa: PLC0415

    results: dict[int, dict[str, dict[str, float]]] = {}
    for size in sizes:
        # A fresh account per size, so the general listing holds just this task.
        with mock_aws():
            services = bootstrap(clock=lambda: datetime(2026, 11, 28, 12, tzinfo=UTC))
            ensure_resources(services)
            app_module.use_services(services)
            key = services.api_keys.issue("bench").key
            task_id = _seed_task(services, size)
            os.chdir(ROOT)
            with Client(app_module.app, stage_name="local") as client:
                client.http._local_gateway = SpecLocalGateway(app_module.app, client.http._config)
                general = _time_call(client, "/api/tasks/stats", key, repeat)
                detail = _time_call(client, f"/api/tasks/{task_id}/stats", key, repeat)
            app_module.use_services(None)
        results[size] = {"general": general, "detail": detail}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()
    sizes = (args.small, args.large)
    results = measure(sizes, args.repeat)
    print(f"Stats cost: a task with {args.small} messages vs one with {args.large}")
    print(f"({args.repeat} calls each; medians; DynamoDB requests and items read per call)")
    header = f"{'call':<14}{'messages':>9}{'requests':>10}{'items read':>12}{'time (moto)':>14}"
    print(header)
    for call in ("general", "detail"):
        for size in sizes:
            row = results[size][call]
            print(
                f"{call:<14}{size:>9}{row['requests']:>10.1f}{row['items']:>12.1f}"
                f"{row['seconds'] * 1000:>11.2f} ms"
            )
        small, large = results[args.small][call], results[args.large][call]
        items_ratio = (large["items"] or 1) / (small["items"] or 1)
        time_ratio = large["seconds"] / small["seconds"]
        print(f"{call + ' ratio':<14}{'':>9}{'':>10}{items_ratio:>12.2f}{time_ratio:>14.2f}")


if __name__ == "__main__":
    main()
