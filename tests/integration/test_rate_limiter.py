"""The send rate limits on DynamoDB (``chalicelib/storage/ratelimit.py``), on moto: the
requests a reservation takes, two scopes together, and senders on several threads
sharing one scope within ``rate * (T + H) + 1`` calls in any window."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
from botocore.client import BaseClient

from chalicelib.bootstrap import Services
from chalicelib.domain.ratelimit import RateScope, Reservation, to_us
from chalicelib.storage.models import RateModel
from chalicelib.storage.ratelimit import DynamoRateLimiter
from tests.unit.test_rate_limit import bound, busiest_window

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
H = timedelta(seconds=0.25)
ms = timedelta(milliseconds=1)
EVERYONE = RateScope("all", 20)


@pytest.fixture
def limiter(services: Services) -> DynamoRateLimiter:
    assert services.rate_limiter.horizon == H  # RATE_HORIZON_SECONDS' default
    return services.rate_limiter


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """DynamoDB requests by operation (the test resets it as it goes)."""
    calls: Counter[str] = Counter()
    real_call = BaseClient._make_api_call

    def counting_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
        if client.meta.service_model.service_name == "dynamodb":
            calls[operation] += 1
        return real_call(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", counting_call)
    yield calls


def reserve(
    limiter: DynamoRateLimiter,
    calls: Counter[str],
    scopes: list[RateScope],
    n: int,
    now: datetime,
) -> tuple[Reservation, dict[str, int]]:
    calls.clear()
    got = limiter.reserve(scopes, n, now)
    assert set(calls) <= {"UpdateItem", "GetItem"}, calls  # no scan, no query
    return got, dict(calls)


def test_a_reservation_is_one_write_when_the_scope_is_as_this_process_last_saw_it(
    limiter: DynamoRateLimiter, requests: Counter[str]
) -> None:
    # Never used: started from now.
    got, made = reserve(limiter, requests, [EVERYONE], 3, NOW)
    assert got == Reservation((NOW, NOW + 50 * ms, NOW + 100 * ms), None)
    assert made == {"UpdateItem": 1}
    assert RateModel.get("rate#all").tat_us == to_us(NOW + 150 * ms)
    # Busy: continued from its TAT, up to the horizon.
    got, made = reserve(limiter, requests, [EVERYONE], 10, NOW + 10 * ms)
    assert got.slots == (NOW + 150 * ms, NOW + 200 * ms, NOW + 250 * ms)
    assert got.retry_at == NOW + 50 * ms + timedelta(microseconds=1)
    assert made == {"UpdateItem": 1}
    # Full, as this process knows: no request.
    got, made = reserve(limiter, requests, [EVERYONE], 1, NOW + 20 * ms)
    assert got == Reservation((), NOW + 50 * ms + timedelta(microseconds=1))
    assert made == {}
    # Idle again long after: started from now.
    later = NOW + timedelta(minutes=1)
    got, made = reserve(limiter, requests, [EVERYONE], 1, later)
    assert got == Reservation((later,), None)
    assert made == {"UpdateItem": 1}


def test_at_least_refuses_a_short_grant_without_writing(
    limiter: DynamoRateLimiter, requests: Counter[str]
) -> None:
    reserve(limiter, requests, [EVERYONE], 4, NOW)  # TAT now + 200 ms
    other = DynamoRateLimiter(H)  # guesses idle, is refused, learns the TAT: 1 fits
    calls_before = RateModel.get("rate#all").tat_us
    requests.clear()
    got = other.reserve([EVERYONE], 10, NOW, at_least=3)
    assert got == Reservation((), NOW + 50 * ms + timedelta(microseconds=1))
    assert RateModel.get("rate#all").tat_us == calls_before
    assert requests["UpdateItem"] == 1  # the refused guess; nothing taken after it
    assert got.retry_at is not None
    granted = other.reserve([EVERYONE], 10, got.retry_at, at_least=3).slots
    assert granted == (NOW + 200 * ms, NOW + 250 * ms, NOW + 300 * ms)


def test_another_senders_writes_cost_a_refusal_that_tells_the_tat(
    limiter: DynamoRateLimiter, requests: Counter[str]
) -> None:
    other = DynamoRateLimiter(H)  # another container: it never saw the scope
    reserve(limiter, requests, [EVERYONE], 2, NOW)  # TAT now + 100 ms
    # It guesses idle, is refused with the TAT, and continues from it.
    got, made = reserve(other, requests, [EVERYONE], 2, NOW)
    assert got == Reservation((NOW + 100 * ms, NOW + 150 * ms), None)
    assert made == {"UpdateItem": 2}
    # This one thinks it at 100 ms and asks for 5: refused (200 ms), takes the 1 left.
    got, made = reserve(limiter, requests, [EVERYONE], 5, NOW)
    assert got.slots == (NOW + 200 * ms,)
    assert got.retry_at == NOW + timedelta(microseconds=1)
    assert made == {"UpdateItem": 2}
    # Full: the refusal tells it so; nothing written.
    third = DynamoRateLimiter(H)
    got, made = reserve(third, requests, [EVERYONE], 1, NOW)
    assert got == Reservation((), NOW + timedelta(microseconds=1))
    assert made == {"UpdateItem": 1}
    assert RateModel.get("rate#all").tat_us == to_us(NOW + 250 * ms)


def test_a_scope_removed_behind_a_process_is_read_and_starts_over(
    limiter: DynamoRateLimiter, requests: Counter[str]
) -> None:
    reserve(limiter, requests, [EVERYONE], 5, NOW)
    RateModel("rate#all").delete()
    # Its increment is refused with no item to hand back: a read finds none.
    got, made = reserve(limiter, requests, [EVERYONE], 1, NOW + 50 * ms)
    assert got.slots == (NOW + 50 * ms,)
    assert made == {"UpdateItem": 2, "GetItem": 1}


def test_a_store_that_does_not_return_the_refused_item_costs_a_read(
    limiter: DynamoRateLimiter, requests: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    reserve(limiter, requests, [EVERYONE], 2, NOW)
    real_call = BaseClient._make_api_call

    def without_item(client: Any, operation: str, params: dict[str, Any]) -> Any:
        params = {k: v for k, v in params.items() if k != "ReturnValuesOnConditionCheckFailure"}
        return real_call(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", without_item)
    got = DynamoRateLimiter(H).reserve([EVERYONE], 2, NOW)
    assert got == Reservation((NOW + 100 * ms, NOW + 150 * ms), None)


def test_two_scopes_give_the_later_slot_and_lose_what_everyones_refuses(
    limiter: DynamoRateLimiter, requests: Counter[str]
) -> None:
    task = RateScope("task#7", 5)
    got, made = reserve(limiter, requests, [task, EVERYONE], 10, NOW)
    assert got.slots == (NOW, NOW + 200 * ms)  # the task's 0, 200 ms; everyone's 0, 50 ms
    assert got.retry_at == NOW + timedelta(microseconds=150_001)
    assert made == {"UpdateItem": 2}
    reserve(limiter, requests, [EVERYONE], 10, NOW)  # 100..200 ms: everyone's is full
    other = RateScope("task#8", 10)
    got, made = reserve(limiter, requests, [other, EVERYONE], 3, NOW)
    assert got == Reservation((), NOW + timedelta(microseconds=1))
    assert made == {"UpdateItem": 1}  # everyone's known full: not asked
    assert RateModel.get("rate#task#8").tat_us == to_us(NOW + 300 * ms)  # its slots lost
    assert RateModel.get("rate#task#7").tat_us == to_us(NOW + 400 * ms)


@pytest.fixture
def atomic_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process moto handles an ``UpdateItem`` without a lock: two threads can both pass
    one condition, and the answer is read from the live item after the write, so it may
    show another thread's later write. DynamoDB applies and answers each write
    atomically (``local/emulator.py`` serialises its requests for the same reason)."""
    from moto.dynamodb.responses import DynamoHandler  # noqa: PLC0415

    lock = threading.Lock()
    real_update = DynamoHandler.update_item

    def update_item(self: Any) -> Any:
        with lock:
            return real_update(self)

    monkeypatch.setattr(DynamoHandler, "update_item", update_item)


@pytest.mark.parametrize("two_scopes", [False, True])
def test_senders_on_threads_share_a_scope_within_the_bound(
    services: Services, atomic_moto: None, two_scopes: bool
) -> None:
    """Four senders, each with its own limiter (its own container), on one virtual clock
    that every reservation moves on by 10 ms: so they ask, out of order, for up to 10
    calls 25 times a virtual second between them, against 20/s (and each its task's 15/s,
    two tasks)."""
    tasks = [RateScope("task#1", 15), RateScope("task#2", 15)]
    ticks = count()
    calls: list[int] = []
    made = Counter[str]()
    lock = threading.Lock()
    seconds = 12
    errors: list[BaseException] = []

    def sender(n: int) -> None:
        limiter = DynamoRateLimiter(H)
        rng = random.Random(n)
        scopes = [tasks[n % 2], EVERYONE] if two_scopes else [EVERYONE]
        try:
            while (tick := next(ticks)) < seconds * 100:
                got = limiter.reserve(scopes, rng.randint(1, 10), NOW + tick * 10 * ms)
                with lock:
                    calls.extend(to_us(slot) for slot in got.slots)
                    made["reservations"] += 1
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    services.rate_limiter.reserve([RateScope("warm", 1)], 1, NOW)  # the client, built once
    threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    calls.sort()
    start = to_us(NOW)
    assert busiest_window(calls, 10_000_000) <= bound(20, shifted=two_scopes)
    # Demand (about 140 a second) is far over 20/s: the cap is used, up to the last
    # horizon (the clock's last tick is at 11.99 s).
    granted = len([t for t in calls if t < start + seconds * 1_000_000])
    assert granted >= 0.99 * 20 * seconds, granted
