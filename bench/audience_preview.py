"""The audience preview's cost with many clients: time, DynamoDB requests and items read.

    python -m bench.audience_preview [--clients 100000]

On the local stack (the emulator on loopback, as ``make run``), clients are seeded in
bulk (``seed_clients``, which also sets the audience counters as the API's writes would)
over 10 codes and 10 tags, plus 3 clients with a rare tag at the end of a code's
partition; then each filter's preview is made through the service the route calls, and
its DynamoDB requests and the items they read are counted. The emulator answers on
loopback: add AWS's few milliseconds a request for the time on AWS.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

from bench.harness import local_stack, seed_clients

CODES = [f"9{n:02d}" for n in range(10)]
TAGS = ["", "vip", "new", "gold", "lapsed", "b2b", "trial", "staff", "press", "beta"]
RARE = "rare"

FILTERS: list[tuple[str, dict[str, list[str]]]] = [
    ("everyone {}", {}),
    ("one code", {"codes": ["900"]}),
    ("one tag", {"tags": ["vip"]}),
    ("3 codes x 2 tags", {"codes": ["900", "901", "902"], "tags": ["vip", "new"]}),
    ("a rare tag in a large code", {"codes": ["900"], "tags": [RARE]}),
    ("nobody", {"codes": ["999"]}),
    (
        "100 codes x 100 tags (the largest filter)",
        {"codes": [f"9{n:02d}" for n in range(100)], "tags": [*TAGS[1:], *map(str, range(91))]},
    ),
]


class Reads:
    """DynamoDB requests and the items they read, from this process's botocore clients."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.items = 0

    def install(self) -> None:
        from botocore import handlers  # noqa: PLC0415

        def after_call(parsed: dict[str, Any], model: Any, **_: Any) -> None:
            if model.service_model.service_name != "dynamodb":
                return
            self.requests[model.name] += 1
            if model.name == "BatchGetItem":
                self.items += sum(len(found) for found in parsed.get("Responses", {}).values())
            else:
                self.items += int(parsed.get("ScannedCount", 0)) or int("Item" in parsed)

        handlers.BUILTIN_HANDLERS.append(("after-call.*.*", after_call))

    def reset(self) -> None:
        self.requests.clear()
        self.items = 0


def seed(clients: int) -> float:
    started = time.monotonic()
    per_pair = max(1, (clients - 3) // (len(CODES) * len(TAGS)))
    next_id = 1
    for code in CODES:
        for tag in TAGS:
            seed_clients(per_pair, code=code, first_id=next_id, tag=tag)
            next_id += per_pair
    seed_clients(3, code="900", first_id=next_id, tag=RARE)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    reads = Reads()
    reads.install()
    with local_stack({}) as stack:
        seconds = seed(args.clients)
        service = stack.services.audience
        total = service.preview([], []).count
        print(f"{total} clients seeded on the local stack in {seconds:.0f} s")
        for name, filter_ in FILTERS:
            codes, tags = filter_.get("codes", []), filter_.get("tags", [])
            timings = []
            for _ in range(args.repeat):
                reads.reset()
                started = time.perf_counter()
                preview = service.preview(codes, tags)
                timings.append(time.perf_counter() - started)
            requests = ", ".join(f"{op} {n}" for op, n in sorted(reads.requests.items()))
            print(
                f"  {name}: count {preview.count}, sample {len(preview.sample)}; "
                f"median {sorted(timings)[len(timings) // 2] * 1000:.0f} ms; "
                f"{sum(reads.requests.values())} requests ({requests}), {reads.items} items read"
            )


if __name__ == "__main__":
    main()
