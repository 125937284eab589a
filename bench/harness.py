"""Shared set-up for the benchmarks: the local stack's parts, seeded data, and a count of
every AWS request the process makes.

The stack is the one ``make run`` starts (moto server on loopback, the fake provider,
the schedule and queue pollers driving ``app.py``'s handlers), assembled in this process
so that one botocore event hook sees every DynamoDB and SQS request.
"""

from __future__ import annotations

import contextvars
import json
import math
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from local.capacity import item_size
from local.emulator import WRITE_UNITS_HEADER
from local.run import stage_environment
from local.state import state_dir
from local.supervisor import ChildProcess, free_port

_not_counted = threading.local()


@dataclass
class Invocation:
    """One Lambda invocation's sequential round trips: AWS requests (and provider calls)
    that start while none of the same kind is in flight start a new round; requests
    sent together (a batch's claims) share one."""

    aws_rounds: int = 0
    provider_rounds: int = 0
    _aws_in_flight: int = 0
    _provider_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def started(self, kind: str) -> None:
        with self.lock:
            if kind == "aws":
                self.aws_rounds += self._aws_in_flight == 0
                self._aws_in_flight += 1
            else:
                self.provider_rounds += self._provider_in_flight == 0
                self._provider_in_flight += 1

    def ended(self, kind: str) -> None:
        with self.lock:
            if kind == "aws":
                self._aws_in_flight -= 1
            else:
                self._provider_in_flight -= 1


# The invocation the current code runs for (copied into the threads it starts).
CURRENT_INVOCATION: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar(
    "bench_invocation", default=None
)


@dataclass
class AwsCalls:
    """AWS requests by service and operation, and the capacity they would use."""

    requests: Counter[str] = field(default_factory=Counter)
    write_units: float = 0.0
    read_units: float = 0.0
    # Write units by "service.Operation", and by table or "table/index".
    write_units_by_operation: Counter[str] = field(default_factory=Counter)
    read_units_by_operation: dict[str, float] = field(default_factory=dict)
    write_units_by_table: Counter[str] = field(default_factory=Counter)
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
            self.write_units_by_operation.clear()
            self.read_units_by_operation.clear()
            self.write_units_by_table.clear()

    def total(self, service: str | None = None) -> int:
        return sum(
            n for key, n in self.requests.items() if service is None or key.startswith(service)
        )

    def record(
        self,
        service: str,
        operation: str,
        params: dict[str, Any],
        parsed: dict[str, Any],
        write_units: dict[str, int] | None = None,
    ) -> None:
        """``write_units``: what the emulator billed, by table and index (None: not an
        item write, or not through the emulator)."""
        if getattr(_not_counted, "active", False):
            return
        read = read_units(operation, params, parsed) if service == "dynamodb" else 0.0
        name = f"{service}.{operation}"
        with self.lock:
            self.requests[name] += 1
            self.read_units += read
            self.read_units_by_operation[name] = self.read_units_by_operation.get(name, 0.0) + read
            for table, n in (write_units or {}).items():
                self.write_units += n
                self.write_units_by_operation[name] += n
                self.write_units_by_table[table] += n


_ITEM_BYTES: dict[str, tuple[int, int]] = {}  # table -> (bytes, items) seen in answers


def _query_bytes(params: dict[str, Any], parsed: dict[str, Any]) -> int:
    """Bytes a Query or Scan read: the items it returned, and those its filter dropped
    at the average size of the table's items returned so far (1 KB before any)."""
    table = str(params.get("TableName", ""))
    returned = [item_size(item) for item in parsed.get("Items", [])]
    seen_bytes, seen_items = _ITEM_BYTES.get(table, (0, 0))
    seen_bytes, seen_items = seen_bytes + sum(returned), seen_items + len(returned)
    _ITEM_BYTES[table] = (seen_bytes, seen_items)
    average = seen_bytes / seen_items if seen_items else 1024
    dropped = max(0, int(parsed.get("ScannedCount", 0)) - len(returned))
    return int(sum(returned) + dropped * average)


def read_units(operation: str, params: dict[str, Any], parsed: dict[str, Any]) -> float:
    """On-demand read units, estimated: an item read is one unit (ours are under 4 KB),
    half when eventually consistent; a Query or Scan one unit per 4 KB it read (the
    items dropped by a filter at the table's average size). Write units are exact: the
    emulator bills them (``local/capacity.py``)."""
    requested = list(params.get("RequestItems", {}).values())
    factor = 1.0 if params.get("ConsistentRead") else 0.5
    scanned = max(1, math.ceil(_query_bytes(params, parsed) / 4096)) * factor
    reads: dict[str, Callable[[], float]] = {
        "GetItem": lambda: factor,
        "BatchGetItem": lambda: sum(
            len(v.get("Keys", [])) * (1.0 if v.get("ConsistentRead") else 0.5) for v in requested
        ),
        "Query": lambda: scanned,
        "Scan": lambda: scanned,
    }
    return float(reads.get(operation, lambda: 0.0)())


CALLS = AwsCalls()


def install_counter() -> None:
    """Count every AWS request made by any botocore client created from now on."""
    from botocore import handlers  # noqa: PLC0415

    def provide_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["bench_params"] = params  # the same context reaches after-call

    def before_call(context: dict[str, Any], **_: Any) -> None:
        invocation = CURRENT_INVOCATION.get()
        if invocation is not None:
            invocation.started("aws")
            context["bench_invocation"] = invocation

    def after_call_error(context: dict[str, Any], **_: Any) -> None:
        invocation = context.pop("bench_invocation", None)
        if invocation is not None:
            invocation.ended("aws")

    def after_call(
        parsed: dict[str, Any],
        model: Any,
        context: dict[str, Any],
        http_response: Any = None,
        **_: Any,
    ) -> None:
        invocation = context.pop("bench_invocation", None)
        if invocation is not None:
            invocation.ended("aws")
        params = context.get("bench_params", {})
        billed = None
        if http_response is not None:
            header = http_response.headers.get(WRITE_UNITS_HEADER)
            billed = json.loads(header) if header else None
        CALLS.record(model.service_model.service_name, model.name, params, parsed, billed)

    handlers.BUILTIN_HANDLERS.append(("provide-client-params.*.*", provide_params))
    handlers.BUILTIN_HANDLERS.append(("before-call.*.*", before_call))
    handlers.BUILTIN_HANDLERS.append(("after-call.*.*", after_call))
    handlers.BUILTIN_HANDLERS.append(("after-call-error.*.*", after_call_error))


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
