"""Rate limits on ``make run`` (issue 18), measured by the fake provider's call times.

SPEC: a task's ``rate_limit`` caps how fast its messages reach the provider, and
``SEND_RATE_LIMIT`` caps all tasks together; over any 10-second window the provider
gets at most the cap plus 5%, across every concurrent sender; and a limit is used fully
(20/s on the local stack delivers at least 19/s when nothing else limits it).

One stack with ``SEND_RATE_LIMIT=6``: a mailing with ``rate_limit: 4`` alone keeps to
4/s and uses most of it; then a mailing without a limit of its own joins it, and both
together keep to 6/s and use most of it (the emulator's pace, see BOTH_USED). Real
time throughout (about 70 s with the stack's start).
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_engine_faults import ID_SPAN, Api, Provider, iso, log_of, phones, wait_for

WINDOW = 10.0  # seconds: SPEC measures rates over any 10-second window
OVER = 1.05  # ... and allows the cap plus 5%
# Caps below what the emulated stack delivers on a loaded 2-core machine (about 10
# messages/s while it also fans out and serves the API: docs/performance.md), so that
# "used fully" measures the limiter, not the emulator. 20/s is measured by make bench.
TASK_CAP = 4
ALL_CAP = 6
OBSERVED = 10.0  # seconds of calls measured in each phase (after 2 s of start-up)
# How much of a cap the stack must use. These are floors that catch a limiter granting
# far less than its rate, not the figures (the limiter alone: 100% of 20/s in make bench;
# docs/performance.md): the stack shares the machine with the emulator and, in CI, with
# whatever else runs there. A 4/s task alone: 3.9-4.0/s here, 3.7/s in a CI run. With two
# mailings at once each sender claims, waits for slots, calls and records on the
# emulator, one request at a time: 4.7-5.2/s of 6/s here, 4.4/s in a CI run; the slots it
# leaves unused are the emulator's time, not the limiter's.
ALONE_USED = 0.85
BOTH_USED = 0.6


def busiest(times: list[float]) -> int:
    """The most calls in any window of WINDOW seconds (half-open)."""
    times = sorted(times)
    first, most = 0, 0
    for last, moment in enumerate(times):
        while times[first] <= moment - WINDOW:
            first += 1
        most = max(most, last - first + 1)
    return most


def per_second(times: list[float]) -> list[int]:
    """Calls in each second from the first call on."""
    counts = Counter(int(t - min(times)) for t in times)
    return [counts[second] for second in range(max(counts) + 1)] if counts else []


def rate_between(times: list[float], start: float, stop: float) -> float:
    inside = [t for t in times if start <= t < stop]
    return len(inside) / (stop - start)


def create(api: Api, code: str, rate_limit: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "start_time": iso(datetime.now(UTC)),
        "end_time": iso(datetime.now(UTC) + timedelta(minutes=10)),
        "text": "e2e rate limits",
        "filter": {"codes": [code]},
        "rate_limit": rate_limit,
    }
    answer = api.session.post(f"{api.url}/tasks/", json=body, timeout=60)
    assert answer.status_code == 201, answer.text
    assert answer.json()["rate_limit"] == rate_limit
    return dict(answer.json())


@pytest.mark.stack_env(SEND_RATE_LIMIT=str(ALL_CAP))
def test_a_task_limit_and_the_total_limit_hold_and_are_used_fully(stack: Stack) -> None:
    api, provider = Api(stack), Provider(stack)
    api.add_clients(phones("7903", 160), code="limited", threads=6)
    api.add_clients(phones("7904", 160), code="free", threads=6)

    def times(*task_ids: int) -> list[float]:
        return [c["at"] for c in provider.calls() if c["msg_id"] // ID_SPAN in task_ids]

    # The limited mailing alone (160 messages: 40 s of work at 4/s).
    limited = create(api, "limited", TASK_CAP)
    first_limited = wait_for("its calls", lambda: min(times(limited["id"]), default=0), within=30)
    time.sleep(2 + OBSERVED + 1)
    alone = rate_between(times(limited["id"]), first_limited + 2, first_limited + 2 + OBSERVED)

    # With a mailing of no limit of its own beside it: SEND_RATE_LIMIT binds.
    free = create(api, "free", None)
    first_free = wait_for("its calls", lambda: min(times(free["id"]), default=0), within=30)
    time.sleep(2 + OBSERVED + 1)
    both = rate_between(times(limited["id"], free["id"]), first_free + 2, first_free + 2 + OBSERVED)

    problems = []
    busiest_limited = busiest(times(limited["id"]))
    busiest_all = busiest(times(limited["id"], free["id"]))
    if busiest_limited > TASK_CAP * WINDOW * OVER:
        problems.append(f"the limited task: {busiest_limited} calls in 10 s at {TASK_CAP}/s")
    if busiest_all > ALL_CAP * WINDOW * OVER:
        problems.append(f"all tasks: {busiest_all} calls in 10 s at {ALL_CAP}/s")
    if alone < TASK_CAP * ALONE_USED:
        problems.append(f"the limited task alone reached {alone:.2f}/s of {TASK_CAP}/s")
    if both < ALL_CAP * BOTH_USED:
        problems.append(f"both tasks reached {both:.2f}/s of {ALL_CAP}/s")
    print(
        f"\nrate limits: alone {alone:.2f}/s of {TASK_CAP}, both {both:.2f}/s of {ALL_CAP}; "
        f"busiest 10 s: {busiest_limited} (cap {TASK_CAP * 10}), {busiest_all} (cap {ALL_CAP * 10})"
    )
    every = times(limited["id"], free["id"])
    assert not problems, (
        "\n".join(problems)
        + "\ncalls a second from the first (the second task's first at"
        + f" {first_free - min(every):.1f} s): {per_second(every)}\n"
        + log_of(stack, "send batch", "fan-out")
    )
