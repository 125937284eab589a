"""The send rate limits' arithmetic (``chalicelib/domain/ratelimit.py``): GCRA per scope,
two scopes combined, and, over seeded random senders on the in-memory fake, the bound
``rate * (T + H) + 1`` in every window and the rate used in full under demand."""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.domain.ratelimit import (
    RateScope,
    Reservation,
    fitting,
    from_us,
    grant,
    offset,
    send_scopes,
    to_us,
)
from chalicelib.settings import Settings
from tests.fakes import FakeRateLimiter, World

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
H = timedelta(seconds=0.25)
H_US = 250_000
T_US = 10_000_000  # SPEC: measured over any 10-second window
ms = timedelta(milliseconds=1)


def test_an_idle_scope_grants_what_fits_in_the_horizon_from_now() -> None:
    limiter = FakeRateLimiter(horizon=H)
    got = limiter.reserve([RateScope("all", 20)], 10, NOW)
    assert got.slots == tuple(NOW + i * 50 * ms for i in range(5))  # 0..200 ms < 250 ms
    # The next slot (250 ms) is within the horizon of any time after now.
    assert got.retry_at == NOW + timedelta(microseconds=1)
    assert limiter.tats["all"] == to_us(NOW + 250 * ms)


def test_a_busy_scope_continues_from_its_tat_and_answers_when_to_ask_again() -> None:
    limiter = FakeRateLimiter(horizon=H)
    scope = RateScope("all", 20)
    limiter.reserve([scope], 5, NOW)  # TAT now + 250 ms
    later = NOW + 100 * ms
    got = limiter.reserve([scope], 10, later)
    assert got.slots == (NOW + 250 * ms, NOW + 300 * ms)  # before later + 250 ms
    assert got.retry_at == NOW + 100 * ms + timedelta(microseconds=1)
    full = limiter.reserve([scope], 1, later)
    assert full == Reservation((), NOW + 100 * ms + timedelta(microseconds=1))
    assert full.retry_at is not None
    assert limiter.reserve([scope], 1, full.retry_at).slots == (NOW + 350 * ms,)


def test_one_per_second_grants_one_call_and_the_next_at_its_slot_less_the_horizon() -> None:
    limiter = FakeRateLimiter(horizon=H)
    scope = RateScope("task#1", 1)
    got = limiter.reserve([scope], 10, NOW)
    assert got.slots == (NOW,)
    assert got.retry_at == NOW + timedelta(seconds=0.75, microseconds=1)
    assert limiter.reserve([scope], 10, got.retry_at - timedelta(microseconds=1)).slots == ()
    assert limiter.reserve([scope], 10, got.retry_at).slots == (NOW + timedelta(seconds=1),)


def test_fewer_than_at_least_fitting_grants_none_and_says_when_that_many_fit() -> None:
    limiter = FakeRateLimiter(horizon=H)
    scope = RateScope("all", 20)
    limiter.reserve([scope], 4, NOW)  # TAT now + 200 ms: one slot left in the horizon
    got = limiter.reserve([scope], 10, NOW, at_least=3)
    # Three fit once now + 250 ms passes the third (300 ms): 50 ms later.
    assert got == Reservation((), NOW + 50 * ms + timedelta(microseconds=1))
    assert limiter.tats["all"] == to_us(NOW + 200 * ms)  # nothing taken
    assert got.retry_at is not None
    assert (
        limiter.reserve([scope], 10, got.retry_at - timedelta(microseconds=1), at_least=3).slots
        == ()
    )
    granted = limiter.reserve([scope], 10, got.retry_at, at_least=3).slots
    assert granted == (NOW + 200 * ms, NOW + 250 * ms, NOW + 300 * ms)
    # Never more asked than wanted: at_least past the count is the count.
    assert len(FakeRateLimiter(horizon=H).reserve([scope], 2, NOW, at_least=9).slots) == 2


def test_a_scope_idle_for_long_starts_again_from_now() -> None:
    limiter = FakeRateLimiter(horizon=H)
    scope = RateScope("all", 20)
    limiter.reserve([scope], 5, NOW)
    later = NOW + timedelta(minutes=5)
    assert limiter.reserve([scope], 2, later).slots == (later, later + 50 * ms)


def test_no_scope_grants_everything_now_and_nothing_asked_grants_nothing() -> None:
    limiter = FakeRateLimiter(horizon=H)
    assert limiter.reserve([], 3, NOW) == Reservation((NOW, NOW, NOW), None)
    assert limiter.reserve([RateScope("all", 1)], 0, NOW) == Reservation((), None)
    assert limiter.tats == {}


def test_two_scopes_take_the_later_slot_and_lose_what_the_second_refuses() -> None:
    limiter = FakeRateLimiter(horizon=H)
    task, everyone = RateScope("task#1", 5), RateScope("all", 20)
    got = limiter.reserve([task, everyone], 10, NOW)
    # task: 0 and 200 ms; all: 0 and 50 ms.
    assert got.slots == (NOW, NOW + 200 * ms)
    assert got.retry_at == NOW + timedelta(microseconds=150_001)  # the task's 400 ms - H
    # Another task fills the rest of everyone's horizon.
    other = limiter.reserve([RateScope("task#2", 1000), everyone], 10, NOW)
    assert other.slots == (NOW + 100 * ms, NOW + 150 * ms, NOW + 200 * ms)
    # Now everyone's is full: another task's slots are reserved and lost.
    third = RateScope("task#3", 10)
    lost = limiter.reserve([third, everyone], 3, NOW)
    assert lost.slots == ()
    assert lost.retry_at == NOW + timedelta(microseconds=1)  # everyone's 250 ms - H
    assert limiter.tats["task#3"] == to_us(NOW + 300 * ms)  # 0, 100, 200 ms: lost
    assert limiter.tats["all"] == to_us(NOW + 250 * ms)


def test_scopes_are_validated_and_named_in_order() -> None:
    for bad in (0, 10_001):
        with pytest.raises(ValueError, match="rate"):
            RateScope("all", bad)
    with pytest.raises(ValueError, match="once"):
        FakeRateLimiter().reserve([RateScope("all", 1), RateScope("all", 2)], 1, NOW)
    assert send_scopes(7, 5, 20) == (RateScope("task#7", 5), RateScope("all", 20))
    assert send_scopes(7, None, 20) == (RateScope("all", 20),)
    assert send_scopes(7, None, None) == ()


@pytest.mark.parametrize("rate", [1, 3, 7, 20, 333, 9_999, 10_000])
def test_offsets_and_fitting_agree(rate: int) -> None:
    for start in (0, 1, 99_999, 249_999, 250_000):
        k = fitting(start, rate, 0, H_US)
        assert all(start + offset(i, rate) < H_US for i in range(k))
        assert start + offset(k, rate) >= H_US
    # j steps never span less than j / rate - 1 µs, nor more than j / rate + 1 µs.
    for i in range(0, 3 * rate, max(1, rate // 97)):
        for j in (1, 2, rate):
            span = offset(i + j, rate) - offset(i, rate)
            assert j * 1_000_000 / rate - 1 < span < j * 1_000_000 / rate + 1


def test_times_round_trip_in_microseconds() -> None:
    when = NOW + timedelta(microseconds=123_456)
    assert from_us(to_us(when)) == when
    assert grant(None, 20, 0, to_us(NOW), H_US).slots_us == ()


# --- simulated senders -------------------------------------------------------------------


@dataclass(order=True)
class Ask:
    at_us: int
    sender: int = field(compare=False)


@dataclass
class Run:
    calls: dict[str, list[int]]  # scope key -> call times (µs since the run's start)
    reservations: int


def simulate(
    rng: random.Random,
    senders: Sequence[Sequence[RateScope]],
    *,
    seconds: float,
    max_count: int,
    latency_us: int,
    lag_us: int = 0,
    wander: float = 0.0,
) -> Run:
    """Senders on a virtual clock, each going through its scopes: it asks for up to
    ``max_count`` calls, and asks again at its last slot (it called, and takes its next
    batch) or, granted none, at ``retry_at``, each after up to ``latency_us``; with
    probability ``wander`` it asks at a random time instead (an invocation arriving
    anywhere). Its ``now`` may be up to ``lag_us`` old when it reaches the store (a
    request that waited on the network), so stores see ``now`` out of order."""
    start = to_us(NOW)
    end = start + int(seconds * 1_000_000)
    limiter = FakeRateLimiter(horizon=H)
    asks = [Ask(start + rng.randrange(0, 20_000), s) for s in range(len(senders))]
    heapq.heapify(asks)
    calls: dict[str, list[int]] = {scope.key: [] for scopes in senders for scope in scopes}
    while asks and asks[0].at_us < end:
        ask = heapq.heappop(asks)
        now = ask.at_us - rng.randrange(0, lag_us + 1)
        asked = rng.randint(1, max_count)
        got = limiter.reserve(senders[ask.sender], asked, from_us(now))
        slots = [to_us(slot) for slot in got.slots]
        assert slots == sorted(slots)
        assert all(now <= slot < now + H_US for slot in slots)
        assert len(slots) <= asked
        assert (got.retry_at is None) == (len(slots) == asked)
        assert got.retry_at is None or to_us(got.retry_at) > now
        for scope in senders[ask.sender]:
            calls[scope.key] += [slot - start for slot in slots]
        if rng.random() < wander:
            following = ask.at_us + rng.randrange(0, 2 * H_US)
        elif slots:
            following = max(ask.at_us, slots[-1]) + rng.randrange(0, latency_us + 1)
        else:
            assert got.retry_at is not None
            following = max(ask.at_us + 1, to_us(got.retry_at)) + rng.randrange(0, latency_us + 1)
        heapq.heappush(asks, Ask(following, ask.sender))
    return Run({key: sorted(times) for key, times in calls.items()}, limiter.reservations)


def busiest_window(times: list[int], length_us: int) -> int:
    """The most calls in any window [t, t + length) (one starting at a call is busiest)."""
    return max(
        (bisect_left(times, t + length_us) - i for i, t in enumerate(times)),
        default=0,
    )


def bound(rate: int, shifted: bool) -> int:
    """rate * (T + H) + 1 with a second scope (rate * T + 1 alone)."""
    return math.floor(rate * (T_US + (H_US if shifted else 0)) / 1_000_000) + 1


@pytest.mark.parametrize("seed", range(12))
def test_no_window_of_ten_seconds_exceeds_rate_times_t_plus_h_plus_one(seed: int) -> None:
    rng = random.Random(seed)
    rates = [1, 2, 3, 7, 20, 50, 333]
    everyone = RateScope("all", rng.choice(rates)) if rng.random() < 0.8 else None
    tasks = [
        RateScope(f"task#{n}", rng.choice(rates)) if rng.random() < 0.7 else None
        for n in range(rng.randint(1, 3))
    ]
    senders = [
        tuple(s for s in (rng.choice(tasks), everyone) if s is not None)
        for _ in range(rng.randint(2, 8))
    ]
    senders = [scopes for scopes in senders if scopes] or [(RateScope("all", 20),)]
    run = simulate(
        rng,
        senders,
        seconds=60,
        max_count=rng.choice([1, 10, 40]),
        latency_us=rng.choice([0, 5_000, 100_000]),
        lag_us=rng.choice([0, 20_000]),
        wander=rng.choice([0.0, 0.3]),
    )
    for scopes in senders:
        for scope in scopes:
            shifted = any(len(s) > 1 and scope in s for s in senders)
            worst = busiest_window(run.calls[scope.key], T_US)
            assert worst <= bound(scope.per_second, shifted), (scope, worst)


@pytest.mark.parametrize("rate", [1, 3, 7, 20, 333, 1_000])
def test_demand_over_the_rate_gets_at_least_99_percent_of_it(rate: int) -> None:
    rng = random.Random(rate)
    # Enough senders of 10 calls for twice the rate: each takes its next batch once it
    # made its last call, up to a horizon after it asked.
    count = max(4, math.ceil(2 * rate * 0.255 / 5.5))
    scope = RateScope("all", rate)
    run = simulate(rng, [(scope,)] * count, seconds=61, max_count=10, latency_us=5_000)
    calls = [t for t in run.calls["all"] if t < 60_000_000]
    assert len(calls) >= 0.99 * rate * 60, (len(calls), rate * 60)
    assert busiest_window(run.calls["all"], T_US) <= bound(rate, shifted=False)


def test_a_task_under_a_looser_cap_for_all_gets_its_own_rate() -> None:
    task, everyone = RateScope("task#1", 20), RateScope("all", 1_000)
    run = simulate(random.Random(5), [(task, everyone)] * 4, seconds=61, max_count=10,
                   latency_us=5_000)  # fmt: skip
    assert len([t for t in run.calls["task#1"] if t < 60_000_000]) >= 0.99 * 20 * 60


def test_the_cap_for_all_is_used_when_tasks_compete_for_it() -> None:
    """Two tasks whose own caps add up to more than everyone's: everyone's is filled,
    though the task slots reserved and then refused by everyone's scope are lost."""
    everyone = RateScope("all", 20)
    senders = [(RateScope("task#1", 15), everyone)] * 4 + [(RateScope("task#2", 15), everyone)] * 4
    run = simulate(random.Random(9), senders, seconds=61, max_count=10, latency_us=5_000)
    calls = [t for t in run.calls["all"] if t < 60_000_000]
    assert len(calls) >= 0.99 * 20 * 60, len(calls)


def test_the_fake_is_one_io_step_of_the_world() -> None:
    world = World(NOW, random.Random(1))
    limiter = FakeRateLimiter(world, horizon=H)
    limiter.reserve([RateScope("all", 20)], 1, NOW + timedelta(hours=1))
    assert world.io_steps == 2
    assert world.now == NOW  # it uses the now it is given, never moves the clock


# --- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "rate"), [("", None), ("  ", None), ("1", 1), (" 20 ", 20), ("10000", 10_000)]
)
def test_send_rate_limit_is_a_whole_number_of_calls_per_second_or_none(
    raw: str, rate: int | None
) -> None:
    assert Settings.from_env({"SEND_RATE_LIMIT": raw}).send_rate_limit == rate
    assert Settings.from_env({}).send_rate_limit is None


@pytest.mark.parametrize("raw", ["0", "-1", "10001", "2.5", "fast", "1e3"])
def test_send_rate_limit_refuses_anything_else(raw: str) -> None:
    with pytest.raises(ValueError, match="SEND_RATE_LIMIT must be") as err:
        Settings.from_env({"SEND_RATE_LIMIT": raw})
    assert repr(raw) in str(err.value)


def test_the_horizon_defaults_to_a_quarter_second_and_is_bounded() -> None:
    assert Settings.from_env({}).rate_horizon() == timedelta(seconds=0.25)
    assert Settings.from_env({"RATE_HORIZON_SECONDS": "0.1"}).rate_horizon() == 100 * ms
    for raw in ("0", "-0.25", "0.6", "soon"):
        with pytest.raises(ValueError, match="RATE_HORIZON_SECONDS must be"):
            Settings.from_env({"RATE_HORIZON_SECONDS": raw})
