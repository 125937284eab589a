"""Shared set-up for the benchmarks: the local stack's parts, seeded data, and a count of
every AWS request the process makes.

The stack is the one ``make run`` starts (moto server on loopback, the fake provider,
the schedule and queue pollers driving ``app.py``'s handlers), assembled in this process
so that one botocore event hook sees every DynamoDB and SQS request.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from local.run import stage_environment
from local.state import state_dir
from local.supervisor import ChildProcess, free_port

_not_counted = threading.local()


@dataclass
class AwsCalls:
    """AWS requests by service and operation, and the capacity they would use."""

    requests: Counter[str] = field(default_factory=Counter)
    write_units: float = 0.0
    read_units: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Leave out the benchmark's own requests (made on this thread)."""
        _not_counted.active = True
        try:
            yield
        finally:
            _not_counted.active = False

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.write_units = self.read_units = 0.0

    def total(self, service: str | None = None) -> int:
        return sum(
            n for key, n in self.requests.items() if service is None or key.startswith(service)
        )

    def record(
        self, service: str, operation: str, params: dict[str, Any], parsed: dict[str, Any]
    ) -> None:
        if getattr(_not_counted, "active", False):
            return
        write, read = _capacity(operation, params, parsed)
        with self.lock:
            self.requests[f"{service}.{operation}"] += 1
            self.write_units += write
            self.read_units += read


def _capacity(
    operation: str, params: dict[str, Any], parsed: dict[str, Any]
) -> tuple[float, float]:
    """On-demand request units, assuming items under 1 KB (ours are) and strong reads."""
    requested = list(params.get("RequestItems", {}).values())
    scanned = max(1.0, int(parsed.get("ScannedCount", 0)) / 4)  # 4 KB: about four items
    writes: dict[str, Callable[[], float]] = {
        "PutItem": lambda: 1.0,
        "UpdateItem": lambda: 1.0,
        "DeleteItem": lambda: 1.0,
        "TransactWriteItems": lambda: 2.0 * len(params.get("TransactItems", [])),
        "BatchWriteItem": lambda: float(sum(len(v) for v in requested)),
    }
    reads: dict[str, Callable[[], float]] = {
        "GetItem": lambda: 1.0,
        "BatchGetItem": lambda: float(sum(len(v.get("Keys", [])) for v in requested)),
        "Query": lambda: scanned,
        "Scan": lambda: scanned,
    }
    none = lambda: 0.0  # noqa: E731
    return writes.get(operation, none)(), reads.get(operation, none)()


CALLS = AwsCalls()


def install_counter() -> None:
    """Count every AWS request made by any botocore client created from now on."""
    from botocore import handlers  # noqa: PLC0415

    def provide_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["bench_params"] = params  # the same context reaches after-call

    def after_call(parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        params = context.get("bench_params", {})
        CALLS.record(model.service_model.service_name, model.name, params, parsed)

    handlers.BUILTIN_HANDLERS.append(("provide-client-params.*.*", provide_params))
    handlers.BUILTIN_HANDLERS.append(("after-call.*.*", after_call))


def install_latency(seconds: float) -> None:
    """Every counted AWS request from now on waits ``seconds`` before it is sent, as a
    request to AWS spends that long on the network, which the emulator on loopback does
    not: with it, work that overlaps requests (parallel workers) shows its speed-up
    instead of the emulator's CPU limit. Requests left out of the count (the benchmark's
    own) do not wait."""
    from botocore import handlers  # noqa: PLC0415

    def wait(**_: Any) -> None:
        if not getattr(_not_counted, "active", False):
            time.sleep(seconds)

    handlers.BUILTIN_HANDLERS.append(("before-send.*.*", wait))


@dataclass
class Stack:
    emulator: ChildProcess
    emulator_url: str
    services: Any
    parts: list[Any] = field(default_factory=list)

    def stop(self) -> None:
        for part in reversed(self.parts):
            part.stop()
        self.emulator.stop()


@contextmanager
def local_stack(extra_env: dict[str, str]) -> Iterator[Stack]:
    """The emulator started, the environment set, tables and queues created."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        **stage_environment(),
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "LOG_LEVEL": "WARNING",
        **extra_env,
    }
    os.environ.clear()
    os.environ.update(env)
    emulator = ChildProcess(
        "moto",
        [sys.executable, "-m", "local.emulator", "-H", "127.0.0.1", "-p", str(port)],
        env,
        ready_url=f"{url}/moto-api/",
        log_file=state_dir() / "bench-emulator.log",
    )
    emulator.start()
    stack: Stack | None = None
    try:
        import app as app_module  # noqa: PLC0415 - after the environment is set
        from local.resources import ensure_resources  # noqa: PLC0415

        app_module.use_services(None)
        services = app_module.services()
        ensure_resources(services)
        stack = Stack(emulator=emulator, emulator_url=url, services=services)
        yield stack
    finally:
        if stack is not None:
            stack.stop()
        else:
            emulator.stop()


def seed_clients(count: int, code: str = "900", first_id: int = 1, tag: str = "") -> None:
    """Bulk-load clients (the fan-out only reads them; phones' uniqueness is not at stake),
    and move the clients' id sequence past them, as the API would have: a mailing's
    audience ends at that sequence's value when it starts (chalicelib/domain/fanout.py),
    and add them to the preview's audience counters (chalicelib/domain/audience.py)."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from chalicelib.domain.audience import EVERYONE, CountKey  # noqa: PLC0415
    from chalicelib.storage.audience import add_counts  # noqa: PLC0415
    from chalicelib.storage.models import ClientModel, CounterModel, tag_key  # noqa: PLC0415

    now = datetime.now(UTC)
    with ClientModel.batch_write() as batch:
        for client_id in range(first_id, first_id + count):
            batch.save(
                ClientModel(
                    id=client_id,
                    phone=f"7{9_000_000_000 + client_id}",
                    code=code,
                    tag=tag,
                    tag_key=tag_key(tag),
                    utc="UTC",
                    created_at=now,
                    updated_at=now,
                )
            )
    # The preview's counters, as the API's writes would have moved them (all one pair).
    add_counts(
        dict.fromkeys(
            [CountKey(code, tag), CountKey(code, None), CountKey(None, tag), EVERYONE], count
        )
    )
    sequence = CounterModel("clients")
    highest = first_id + count - 1
    sequence.update(
        actions=[CounterModel.value.set(highest)],
        condition=CounterModel.value.does_not_exist() | (CounterModel.value < highest),
    )


def wait_for(condition: Callable[[], bool], timeout: float, poll: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll)
    return condition()
