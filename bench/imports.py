"""Bulk import speed and cost (issue 20): rows per second of an import of N rows through
the real service code (``chalicelib/services/imports.py``) on the local stack's emulator,
the AWS requests per 1,000 rows by operation, and a cost per 1,000 rows.

The file (default 20,000 rows) mixes what an operator's file holds: new clients (most),
clients that exist already (``--existing``, updated), a few bad rows, 20 codes and 5 tags.
The import runs as Lambda would run ``app.import_files``: invocations of ``run`` with the
function's budget (its timeout less ``IMPORT_MARGIN_SECONDS``), each next job carrying on
from the checkpoint. Time is modelled for AWS as bench/pipeline.py models it: each
sequential round trip ``AWS_ROUND_TRIP_MS`` (with threads, the longest chain of requests:
``CriticalPath``), plus the CPU this process used; the service's own budget runs on that
modelled clock, so the invocations, S3 GETs and SQS jobs are those of an AWS run. The
emulator's wall time is printed too (moto applies writes one at a time: CPU-bound on a
shared machine).

    .venv/bin/python -m bench.imports [--rows 20000] [--existing 0.1]
"""

from __future__ import annotations

import argparse
import math
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bench.harness import CALLS, CURRENT_INVOCATION, Invocation, install_counter, local_stack
from bench.pipeline import (
    AWS_ROUND_TRIP_MS,
    PRICE_DYNAMODB_READ_UNIT,
    PRICE_DYNAMODB_WRITE_UNIT,
    PRICE_LAMBDA_GB_SECOND,
    PRICE_LAMBDA_REQUEST,
    PRICE_SQS_REQUEST,
)

# S3 Standard, us-east-1 (AWS price page, 2025): GET per 1,000, PUT/LIST per 1,000.
PRICE_S3_GET = 0.0004 / 1000
PRICE_S3_PUT = 0.005 / 1000
IMPORT_MEMORY_GB = 512 / 1024  # .chalice/config.json, import_files
IMPORT_TIMEOUT_SECONDS = 300  # the same
# Lambda gives a function one vCPU's worth of CPU at 1,769 MB and a share in proportion
# below (Lambda developer guide, "Configuring Lambda function memory").
FULL_VCPU_MB = 1769
# Lambda's SQS mapping receives and deletes each job: two SQS requests per invocation
# besides the sends the code makes (counted).
MAPPING_SQS_REQUESTS = 2
CODES = 20
TAGS = ("", "vip", "new", "wholesale", "retail")
BAD_EVERY = 500  # one bad row (an unknown zone) in this many


@dataclass
class ImportResult:
    rows: int
    existing: int
    invocations: int
    wall_seconds: float
    modelled_seconds: float
    aws_rounds: int
    cpu_seconds: float
    figures: dict[str, int]
    requests: Counter[str] = field(default_factory=Counter)
    write_units: float = 0.0
    read_units: float = 0.0
    write_units_by_operation: dict[str, float] = field(default_factory=dict)
    counted: int = 0  # the audience counter "everyone" after the import
    stored: int = 0  # clients in the table after the import

    @property
    def rate(self) -> float:
        """Rows per second on AWS, per the model."""
        return self.rows / self.modelled_seconds

    @property
    def slow_rate(self) -> float:
        """The same, the CPU time stretched to the function's share of a vCPU."""
        stretch = FULL_VCPU_MB / (IMPORT_MEMORY_GB * 1024)
        return self.rows / (self.modelled_seconds + self.cpu_seconds * (stretch - 1))

    def per_thousand(self, n: float) -> float:
        return n * 1000 / self.rows

    def cost_per_thousand(self) -> dict[str, float]:
        dynamodb = self.write_units * PRICE_DYNAMODB_WRITE_UNIT
        dynamodb += self.read_units * PRICE_DYNAMODB_READ_UNIT
        s3 = sum(
            n * (PRICE_S3_GET if op in ("s3.GetObject", "s3.HeadObject") else PRICE_S3_PUT)
            for op, n in self.requests.items()
            if op.startswith("s3.")
        )
        sqs_requests = self.requests_of("sqs") + MAPPING_SQS_REQUESTS * self.invocations
        sqs = sqs_requests * PRICE_SQS_REQUEST
        lambda_cost = (
            self.invocations * PRICE_LAMBDA_REQUEST
            + self.modelled_seconds * IMPORT_MEMORY_GB * PRICE_LAMBDA_GB_SECOND
        )
        costs = {"dynamodb": dynamodb, "s3": s3, "sqs": sqs, "lambda": lambda_cost}
        costs = {name: self.per_thousand(value) for name, value in costs.items()}
        costs["total"] = sum(costs.values())
        return costs

    def requests_of(self, service: str) -> int:
        return sum(n for op, n in self.requests.items() if op.startswith(f"{service}."))


def write_file(rows: int, existing: int) -> bytes:
    """``rows`` rows; the first ``existing`` phones (spread through the file) are the
    seeded clients'."""
    rng = random.Random(rows)  # noqa: S311 - test data
    order = list(range(rows))
    rng.shuffle(order)
    lines = ["phone,code,tag,utc\r\n"]
    for position, n in enumerate(order):
        utc = "Nowhere/Zone" if position % BAD_EVERY == BAD_EVERY - 1 else "Europe/Moscow"
        code = f"9{n % CODES:02d}"
        lines.append(f"7950{n:07d},{code},{TAGS[n % len(TAGS)]},{utc}\r\n")
    return "".join(lines).encode()


def seed_existing(count: int) -> None:
    """Clients (and their phones' claims, and the audience counters) the file updates."""
    from chalicelib.domain.audience import tally  # noqa: PLC0415
    from chalicelib.domain.clients import ClientProfile  # noqa: PLC0415
    from chalicelib.storage.audience import add_counts  # noqa: PLC0415
    from chalicelib.storage.ids import take_ids  # noqa: PLC0415
    from chalicelib.storage.models import ClientModel, PhoneModel, tag_key  # noqa: PLC0415

    if not count:
        return
    now = datetime.now(UTC)
    ids = take_ids("clients", count)
    profiles = []
    with ClientModel.batch_write() as clients, PhoneModel.batch_write() as phones:
        for n, client_id in enumerate(ids):
            phone = f"7950{n:07d}"
            clients.save(
                ClientModel(
                    id=client_id,
                    phone=phone,
                    code="800",
                    tag="old",
                    tag_key=tag_key("old"),
                    utc="UTC",
                    created_at=now,
                    updated_at=now,
                )
            )
            phones.save(PhoneModel(phone, client_id=client_id))
            profiles.append(ClientProfile(phone=phone, code="800", tag="old", utc="UTC"))
    add_counts(tally(profiles))


class CriticalPath:
    """An invocation's sequential AWS round trips when it runs threads: each thread's
    requests follow one another; a pool thread starts where the invocation's own thread
    is (which waits for the pool), and that one carries on after the latest. (The
    harness's ``Invocation`` counts a round only when no request is in flight: right for
    one batch sent together, but a pool kept busy would look like a single round.)"""

    def __init__(self) -> None:
        self.main = threading.get_ident()
        self.clocks: dict[int, int] = {}
        self.latest = 0
        self.lock = threading.Lock()

    def request(self) -> None:
        thread = threading.get_ident()
        with self.lock:
            if thread == self.main:
                clock = self.latest + 1
            else:
                clock = max(self.clocks.get(thread, 0), self.clocks.get(self.main, 0)) + 1
            self.clocks[thread] = clock
            self.latest = max(self.latest, clock)


class ModelledClock:
    """The service's monotonic clock (its budget): the current invocation's time on AWS
    so far, per the model. The CPU is the whole process's (the import's threads; the
    emulator is another process)."""

    def __init__(self) -> None:
        self.invocation = Invocation()
        self.path = CriticalPath()
        self.cpu_at_start = time.process_time()

    def begin(self) -> Invocation:
        self.invocation = Invocation()
        self.path = CriticalPath()
        self.cpu_at_start = time.process_time()
        return self.invocation

    def __call__(self) -> float:
        cpu = time.process_time() - self.cpu_at_start
        return self.path.latest * AWS_ROUND_TRIP_MS / 1000 + cpu

    def install(self) -> None:
        """Count each request of an invocation on its critical path."""
        from botocore import handlers  # noqa: PLC0415

        def before_call(**_: object) -> None:
            if CURRENT_INVOCATION.get() is not None:
                self.path.request()

        handlers.BUILTIN_HANDLERS.append(("before-call.*.*", before_call))


def run(rows: int = 20_000, existing_share: float = 0.1) -> ImportResult:
    install_counter()
    clock = ModelledClock()
    clock.install()
    with local_stack({}) as stack:
        import app as app_module  # noqa: PLC0415
        from chalicelib.domain.audience import EVERYONE  # noqa: PLC0415
        from chalicelib.domain.imports import FINAL  # noqa: PLC0415
        from chalicelib.storage.audience import DynamoAudience  # noqa: PLC0415
        from chalicelib.storage.models import ClientModel  # noqa: PLC0415

        services = stack.services
        existing = int(rows * existing_share)
        with CALLS.paused():
            seed_existing(existing)
            created = services.imports.create()
            services.import_files.put(created.record.key, write_file(rows, existing))
        import_id = created.record.id
        service = services.imports
        service._monotonic = clock
        budget = IMPORT_TIMEOUT_SECONDS - app_module.IMPORT_MARGIN_SECONDS
        CALLS.reset()
        invocations, modelled_total, rounds, cpu_total = 0, 0.0, 0, 0.0
        started = time.perf_counter()
        while True:
            with CALLS.paused():
                record = service._imports.get(import_id)
            if record is not None and record.status in FINAL:
                break
            invocation = clock.begin()
            token = CURRENT_INVOCATION.set(invocation)
            try:
                service.run(import_id, budget)
            finally:
                CURRENT_INVOCATION.reset(token)
            cpu = time.process_time() - clock.cpu_at_start
            billed = math.ceil(clock.path.latest * AWS_ROUND_TRIP_MS + cpu * 1000) / 1000
            invocations += 1
            modelled_total += billed
            rounds += clock.path.latest
            cpu_total += cpu
        wall = time.perf_counter() - started
        assert record is not None
        progress = record.progress
        with CALLS.paused():
            counted = DynamoAudience().counts([EVERYONE]).get(EVERYONE, 0)
            stored = ClientModel.count()
        return ImportResult(
            rows=rows,
            existing=existing,
            invocations=invocations,
            wall_seconds=wall,
            modelled_seconds=modelled_total,
            aws_rounds=rounds,
            cpu_seconds=cpu_total,
            figures={
                "status": 0 if record.status.value == "done" else 1,
                "rows": progress.rows,
                "created": progress.created,
                "updated": progress.updated,
                "rejected": progress.rejected,
            },
            requests=Counter(CALLS.requests),
            write_units=CALLS.write_units,
            read_units=CALLS.read_units,
            write_units_by_operation=dict(CALLS.write_units_by_operation),
            counted=counted,
            stored=stored,
        )


def report(result: ImportResult) -> list[str]:
    f = result.figures
    k = result.per_thousand
    cost = result.cost_per_thousand()
    exact = (
        "exact"
        if result.counted == result.stored == f["created"] + result.existing
        else "NOT EXACT"
    )
    lines = [
        f"import of {result.rows} rows ({result.existing} of existing clients, "
        f"1 in {BAD_EVERY} bad): {'done' if f['status'] == 0 else 'NOT DONE'}, "
        f"created {f['created']}, updated {f['updated']}, rejected {f['rejected']}; "
        f"audience counter {result.counted} for {result.stored} clients ({exact})",
        f"modelled for AWS ({AWS_ROUND_TRIP_MS:g} ms a sequential round trip + CPU): "
        f"{result.modelled_seconds:.1f} s, {result.rate:.0f} rows/s; "
        f"{result.aws_rounds / result.rows:.2f} sequential round trips per row; "
        f"{result.invocations} invocation(s) of {IMPORT_TIMEOUT_SECONDS} s at most; "
        f"100,000 rows in {100_000 / result.rate / 60:.1f} min",
        f"  with Lambda's CPU share at {IMPORT_MEMORY_GB * 1024:.0f} MB "
        f"({IMPORT_MEMORY_GB * 1024:.0f}/{FULL_VCPU_MB} of a vCPU: the CPU time x"
        f"{FULL_VCPU_MB / (IMPORT_MEMORY_GB * 1024):.2f}): {result.slow_rate:.0f} rows/s, "
        f"100,000 rows in {100_000 / result.slow_rate / 60:.1f} min",
        f"on the emulator: {result.wall_seconds:.1f} s wall, "
        f"{result.rows / result.wall_seconds:.0f} rows/s (CPU {result.cpu_seconds:.1f} s here)",
        f"AWS requests per 1,000 rows: {k(sum(result.requests.values())):.0f}; by operation: "
        + ", ".join(f"{op} {k(n):.1f}" for op, n in result.requests.most_common()),
        f"DynamoDB per 1,000 rows: write units {k(result.write_units):.0f} ("
        + ", ".join(
            f"{op} {k(n):.0f}"
            for op, n in sorted(result.write_units_by_operation.items(), key=lambda kv: -kv[1])
        )
        + f"), read units {k(result.read_units):.0f}",
        f"cost per 1,000 rows (USD): DynamoDB {cost['dynamodb']:.5f}, S3 {cost['s3']:.6f}, "
        f"SQS {cost['sqs']:.6f}, Lambda {cost['lambda']:.6f} (modelled GB-s at "
        f"{IMPORT_MEMORY_GB * 1024:.0f} MB), total {cost['total']:.5f}",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--existing", type=float, default=0.1)
    args = parser.parse_args()
    print("\n".join(report(run(args.rows, args.existing))))


if __name__ == "__main__":
    main()
