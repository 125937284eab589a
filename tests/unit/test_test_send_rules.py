"""Test sends' rules on fakes: their msgIds never meet a message's, the calls run in
parallel, a retry is made only when it fits the request's time, and the time fits the
API function's."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from chalicelib.domain.messages import (
    CLIENT_ID_SPAN,
    MAX_MESSAGE_ID,
    MAX_TASK_ID,
    TEST_SEND_BASE,
    is_test_send_id,
    message_id,
    message_id_of_test_send,
)
from chalicelib.domain.provider import Outcome, ProviderResult
from chalicelib.domain.tasks import Task, TaskStatus
from chalicelib.domain.test_sends import NO_TOKEN, STOPPED, TestSendStatus, distinct
from chalicelib.errors import NotFound
from chalicelib.services import test_sends as service_module
from chalicelib.settings import Settings
from tests.conftest import ROOT

# --- the ids ------------------------------------------------------------------------------


def test_the_largest_message_id_is_below_the_test_sends_range() -> None:
    largest = message_id(MAX_TASK_ID, CLIENT_ID_SPAN - 1)
    assert largest == TEST_SEND_BASE - 1
    assert not is_test_send_id(largest)
    assert MAX_TASK_ID == 899_999_999


@pytest.mark.parametrize("task_id", [MAX_TASK_ID + 1, 922_337_203, 0, -1])
def test_a_task_id_that_would_reach_the_range_has_no_message_id(task_id: int) -> None:
    with pytest.raises(ValueError, match="task id"):
        message_id(task_id, 1)


@pytest.mark.parametrize("client_id", [0, CLIENT_ID_SPAN, -1])
def test_a_client_id_outside_its_span_has_no_message_id(client_id: int) -> None:
    with pytest.raises(ValueError, match="client id"):
        message_id(1, client_id)


def test_test_send_ids_fill_the_top_of_the_64_bit_range() -> None:
    assert message_id_of_test_send(1) == TEST_SEND_BASE + 1 == 9_000_000_000_000_000_001
    last = MAX_MESSAGE_ID - TEST_SEND_BASE
    assert message_id_of_test_send(last) == MAX_MESSAGE_ID == 2**63 - 1
    assert all(is_test_send_id(message_id_of_test_send(n)) for n in (1, 2, 10**9, last))
    for number in (0, -1, last + 1):
        with pytest.raises(ValueError, match="test send"):
            message_id_of_test_send(number)


def test_every_message_id_is_outside_the_test_sends_range() -> None:
    for task_id in (1, 2, 10**6, MAX_TASK_ID):
        for client_id in (1, 2, CLIENT_ID_SPAN - 1):
            assert not is_test_send_id(message_id(task_id, client_id))


def test_a_phone_named_twice_counts_once_in_first_named_order() -> None:
    assert distinct(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]


# --- the service, on fakes --------------------------------------------------------------

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
TASK = Task(
    start=NOW,
    end=NOW,
    text="Hello",
    codes=(),
    tags=(),
    window=None,
    id=7,
    status=TaskStatus.FINISHED,
    created_at=NOW,
    updated_at=NOW,
    version=1,
)


class Catalog:
    def get(self, task_id: int) -> Task | None:
        return TASK if task_id == TASK.id else None


@dataclass
class Stopped:
    phones: set[str] = field(default_factory=set)
    asked: list[list[str]] = field(default_factory=list)

    def stopped(self, phones: Sequence[str]) -> set[str]:
        self.asked.append(list(phones))
        return self.phones & set(phones)


@dataclass
class Numbers:
    taken: int = 0

    def take(self, count: int) -> list[int]:
        first = self.taken + 1
        self.taken += count
        return list(range(first, self.taken + 1))


@dataclass
class Call:
    message_id: int
    phone: str
    text: str
    attempt: int
    token: str


class FakeProvider:
    """Answers ``answers[phone]`` in turn (``sent`` when none is left); each call may
    wait at ``barrier`` and moves ``clock`` on by ``call_seconds``."""

    connect_timeout = 2.0
    read_timeout = 10.0

    def __init__(self, clock: Clock, answers: dict[str, list[Outcome]] | None = None) -> None:
        self.clock = clock
        self.answers = answers or {}
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.barrier: threading.Barrier | None = None
        self.call_seconds = 0.0
        self.token_fails = False
        self.warmed = 0

    def warm(self) -> str:
        self.warmed += 1
        if self.token_fails:
            raise RuntimeError("Parameter Store unreachable")
        return "secret-token"

    def send(
        self, message_id: int, phone: str, text: str, attempt: int = 1, *, token: str
    ) -> ProviderResult:
        if self.barrier is not None:
            self.barrier.wait(timeout=5)
        with self.lock:
            self.calls.append(Call(message_id, phone, text, attempt, token))
            left = self.answers.get(phone, [])
            outcome = left.pop(0) if left else Outcome.SENT
            self.clock.now += self.call_seconds
        detail = {Outcome.SENT: "OK", Outcome.RETRY: "HTTP 503", Outcome.PERMANENT: "HTTP 400"}
        return ProviderResult(outcome, 200, detail[outcome])


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    clock: Clock
    provider: FakeProvider
    stoplist: Stopped
    numbers: Numbers
    service: service_module.TestSendService


@pytest.fixture
def world() -> World:
    clock = Clock()
    provider = FakeProvider(clock)
    stoplist, numbers = Stopped(), Numbers()
    service = service_module.TestSendService(
        tasks=Catalog(), stoplist=stoplist, provider=provider, numbers=numbers, monotonic=clock
    )
    return World(clock, provider, stoplist, numbers, service)


PHONES = [f"7900000000{n}" for n in range(1, 6)]


def test_the_five_calls_run_at_once(world: World) -> None:
    world.provider.barrier = threading.Barrier(5)  # a call waits until all five are made
    results = world.service.send(TASK.id, PHONES)
    assert [r.status for r in results] == [TestSendStatus.SENT] * 5
    assert [r.phone for r in results] == PHONES
    assert sorted(c.message_id for c in world.provider.calls) == [
        TEST_SEND_BASE + n for n in range(1, 6)
    ]
    assert {(c.text, c.attempt, c.token) for c in world.provider.calls} == {
        ("Hello", 1, "secret-token")
    }


def test_an_unknown_task_reads_and_calls_nothing(world: World) -> None:
    with pytest.raises(NotFound):
        world.service.send(99, PHONES)
    assert world.stoplist.asked == [] and world.provider.calls == []
    assert world.numbers.taken == 0 and world.provider.warmed == 0


def test_stopped_phones_are_asked_once_and_not_called(world: World) -> None:
    world.stoplist.phones = {PHONES[1]}
    results = world.service.send(TASK.id, [PHONES[0], PHONES[1], PHONES[0]])
    assert world.stoplist.asked == [[PHONES[0], PHONES[1]]]
    assert [(r.phone, r.status, r.error) for r in results] == [
        (PHONES[0], TestSendStatus.SENT, None),
        (PHONES[1], TestSendStatus.SUPPRESSED, STOPPED),
    ]
    assert [c.phone for c in world.provider.calls] == [PHONES[0]]
    assert world.numbers.taken == 1


def test_a_retryable_answer_is_tried_once_more_with_the_same_id(world: World) -> None:
    world.provider.answers = {PHONES[0]: [Outcome.RETRY, Outcome.RETRY, Outcome.RETRY]}
    (result,) = world.service.send(TASK.id, [PHONES[0]])
    assert (result.status, result.error, result.attempts) == (
        TestSendStatus.FAILED,
        "HTTP 503",
        2,
    )
    assert [(c.message_id, c.attempt) for c in world.provider.calls] == [
        (TEST_SEND_BASE + 1, 1),
        (TEST_SEND_BASE + 1, 2),
    ]


def test_a_permanent_answer_is_not_tried_again(world: World) -> None:
    world.provider.answers = {PHONES[0]: [Outcome.PERMANENT]}
    (result,) = world.service.send(TASK.id, [PHONES[0]])
    assert (result.status, result.error, result.attempts) == (
        TestSendStatus.FAILED,
        "HTTP 400",
        1,
    )


def test_no_retry_when_it_would_not_end_within_the_budget(world: World) -> None:
    # The first call took 9 s: 9 + 12 (the timeouts) is over 20.
    world.provider.call_seconds = 9.0
    world.provider.answers = {PHONES[0]: [Outcome.RETRY]}
    (result,) = world.service.send(TASK.id, [PHONES[0]])
    assert (result.status, result.attempts) == (TestSendStatus.FAILED, 1)
    assert len(world.provider.calls) == 1


def test_a_retry_when_it_fits(world: World) -> None:
    world.provider.call_seconds = 8.0  # 8 + 12 = 20: it fits, just
    world.provider.answers = {PHONES[0]: [Outcome.RETRY]}
    (result,) = world.service.send(TASK.id, [PHONES[0]])
    assert (result.status, result.attempts) == (TestSendStatus.SENT, 2)


def test_no_token_fails_every_phone_without_a_call(world: World) -> None:
    world.provider.token_fails = True
    results = world.service.send(TASK.id, PHONES[:2])
    assert [(r.status, r.error, r.message_id) for r in results] == [
        (TestSendStatus.FAILED, NO_TOKEN, None)
    ] * 2
    assert world.provider.calls == []


def test_the_calls_fit_the_api_functions_time() -> None:
    """The first calls alone (the provider's default timeouts) fit the budget, which is
    under the API function's timeout, itself under API Gateway's 29 s."""
    settings = Settings.from_env({})
    call = settings.provider_connect_timeout + settings.provider_read_timeout
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    api_timeout = config["lambda_functions"]["api_handler"]["lambda_timeout"]
    assert call <= service_module.BUDGET_SECONDS < api_timeout < 29
    assert api_timeout - service_module.BUDGET_SECONDS >= 5  # the reads and the answer
