"""Send rate limits shared by concurrent senders (``chalicelib/storage/ratelimit.py``) on
the local stack's emulator: the rate delivered against the cap, the busiest 10-second
window, and the DynamoDB requests a reservation takes.

    .venv/bin/python -m bench.rate_limit [--senders 4] [--rate 20] [--seconds 60]

Each sender thread has its own ``DynamoRateLimiter``, as each Lambda container has,
and loops: reserve up to 10 calls (a batch of 1 to 10, seeded) in the scope ``all``;
"call" at each granted slot (sleep until it, record the time); granted none, sleep until
``retry_at``. The figures are over the calls recorded (their real times, lateness
included) in ``--seconds`` from the first reservation. SPEC: over any 10-second window
at most the cap plus 5 %, and 20/s delivering at least 19/s.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bench.harness import CALLS, CURRENT_INVOCATION, Invocation, install_counter, local_stack
from chalicelib.domain.ratelimit import RateScope
from chalicelib.storage.ratelimit import DynamoRateLimiter

WINDOW = 10.0


@dataclass
class Tally:
    calls: list[float] = field(default_factory=list)  # when each call was made (epoch s)
    late: list[float] = field(default_factory=list)  # how long after its slot
    requests: Counter[int] = field(default_factory=Counter)  # reservations by requests
    lock: threading.Lock = field(default_factory=threading.Lock)


def sender(
    n: int, limiter: DynamoRateLimiter, scope: RateScope, until: float, tally: Tally
) -> None:
    rng = random.Random(n)  # noqa: S311 - batch sizes, not secrets
    while time.time() < until:
        invocation = Invocation()
        token = CURRENT_INVOCATION.set(invocation)
        try:
            got = limiter.reserve([scope], rng.randint(1, 10), datetime.now(UTC))
        finally:
            CURRENT_INVOCATION.reset(token)
        made, late = [], []
        for slot in got.slots:
            time.sleep(max(0.0, slot.timestamp() - time.time()))
            made.append(time.time())
            late.append(made[-1] - slot.timestamp())
        with tally.lock:
            tally.requests[invocation.aws_rounds] += 1
            tally.calls += made
            tally.late += late
        if not got.slots and got.retry_at is not None:
            time.sleep(max(0.0, got.retry_at.timestamp() - time.time()))


def busiest(times: list[float], window: float) -> int:
    return max((bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--rate", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    install_counter()
    with local_stack({}) as stack:
        horizon = stack.services.settings.rate_horizon()
        scope = RateScope("all", args.rate)
        # Each sender's client built (and the table reached) before the clock starts.
        limiters = [DynamoRateLimiter(horizon) for _ in range(args.senders)]
        stack.services.rate_limiter.reserve([RateScope("warm-up", 1)], 1, datetime.now(UTC))
        CALLS.reset()
        tally = Tally()
        started = time.time()
        until = started + args.seconds
        threads = [
            threading.Thread(target=sender, args=(n, limiter, scope, until, tally))
            for n, limiter in enumerate(limiters)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    calls = sorted(t for t in tally.calls if t < until)
    achieved = len(calls) / args.seconds
    worst = busiest(calls, WINDOW)
    cap = args.rate * WINDOW
    reservations = sum(tally.requests.values())
    requests = CALLS.total("dynamodb")
    late = sorted(tally.late)
    shares = ", ".join(
        f"{n}: {100 * k / reservations:.0f} %" for n, k in sorted(tally.requests.items())
    )
    h = horizon.total_seconds()
    print(f"{args.senders} senders, cap {args.rate}/s, horizon {h} s, {args.seconds:.0f} s")
    print(f"  calls: {len(calls)}, achieved {achieved:.2f}/s = {achieved / args.rate:.1%} of cap")
    print(
        f"  busiest {WINDOW:.0f} s window: {worst} calls = {worst / cap:.1%} of cap x"
        f" {WINDOW:.0f} (bound rate*(T+H)+1 = {args.rate * (WINDOW + h) + 1:.1f})"
    )
    print(
        f"  late after the slot: median {1000 * late[len(late) // 2]:.1f} ms,"
        f" p99 {1000 * late[int(len(late) * 0.99)]:.1f} ms, max {1000 * late[-1]:.1f} ms"
    )
    print(
        f"  reservations: {reservations}, DynamoDB requests {requests}"
        f" ({dict(sorted((k.removeprefix('dynamodb.'), v) for k, v in CALLS.requests.items()))})"
        f" = {requests / reservations:.2f} a reservation, {requests / max(len(calls), 1):.2f}"
        " a call"
    )
    print(f"  reservations by requests made: {shares}")


if __name__ == "__main__":
    main()
