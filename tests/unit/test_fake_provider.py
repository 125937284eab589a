"""The fake provider's fault controls (local/fake_provider.py): rules, mix, counts, reset."""

from __future__ import annotations

from collections import Counter

import pytest

from local.fake_provider import FakeProviderState, Plan

PHONE = "79000000001"


def modes(state: FakeProviderState, phone: str | None, calls: int) -> list[str]:
    return [state.plan(phone).mode for _ in range(calls)]


def test_a_rule_fails_the_first_calls_of_its_phone_then_they_succeed() -> None:
    state = FakeProviderState()
    state.configure({"rules": {PHONE: {"fail_first": 2, "mode": "status:500"}}})
    assert modes(state, PHONE, 4) == ["status:500", "status:500", "ok", "ok"]
    assert modes(state, "79000000002", 2) == ["ok", "ok"]  # other phones: the usual
    assert state.phone_calls == {PHONE: 4, "79000000002": 2}


def test_a_rule_without_fail_first_always_applies_and_may_hold_longer() -> None:
    state = FakeProviderState(timeout_sleep_s=30)
    state.configure({"rules": {PHONE: {"mode": "timeout", "timeout_sleep_s": 3}}})
    assert [state.plan(PHONE) for _ in range(3)] == [Plan("timeout", 3.0, fail=False)] * 3


def test_rules_are_replaced_as_a_whole_and_cleared_by_an_empty_object() -> None:
    state = FakeProviderState()
    state.configure({"rules": {PHONE: {"mode": "garbage"}}})
    state.configure({"rules": {"79000000002": {"mode": "status:400"}}})
    assert state.plan(PHONE).mode == "ok"
    state.configure({"rules": {}})
    assert state.plan("79000000002").mode == "ok"


def test_the_mix_is_weighted_and_repeatable_with_a_seed() -> None:
    mix = {"ok": 0.5, "status:500": 0.25, "status:429": 0.05, "garbage": 0.1, "timeout": 0.1}
    state = FakeProviderState()
    state.configure({"mix": mix, "seed": 14})
    first = modes(state, None, 2000)
    state.configure({"seed": 14})
    assert modes(state, None, 2000) == first
    shares = Counter(first)
    assert set(shares) == set(mix)
    for mode, weight in mix.items():
        assert abs(shares[mode] / 2000 - weight) < 0.05
    # A rule wins over the mix for its phone.
    state.configure({"rules": {PHONE: {"fail_first": 1, "mode": "status:503"}}})
    assert modes(state, PHONE, 2) == ["status:503", "ok"]


def test_reset_clears_rules_mix_and_counts() -> None:
    state = FakeProviderState()
    state.configure({"rules": {PHONE: {"mode": "garbage"}}, "mix": {"status:500": 1}})
    state.plan(PHONE)
    state.reset()
    assert state.rules == {}
    assert state.mix is None
    assert state.phone_calls == {}
    assert state.plan(PHONE) == Plan("ok", state.timeout_sleep_s, fail=False)


@pytest.mark.parametrize(
    "update",
    [
        {"rules": {PHONE: {"mode": "nonsense"}}},
        {"rules": {PHONE: {"mode": "status:5000"}}},
        {"rules": {PHONE: {"mode": "ok", "fail_first": -1}}},
        {"rules": {PHONE: {"mode": "ok", "extra": 1}}},
        {"rules": {PHONE: "status:500"}},
        {"rules": [PHONE]},
        {"mix": {"chaos": 1}},
        {"mix": {"ok": 0}},
        {"mix": {"ok": -1, "garbage": 2}},
        {"mix": {}},
        {"seed": "seven"},
        {"latency_ms": 50, "mix": {"bad": 1}},  # all or nothing
    ],
)
def test_an_invalid_configuration_changes_nothing(update: dict[str, object]) -> None:
    state = FakeProviderState()
    with pytest.raises(ValueError):
        state.configure(update)
    assert (state.rules, state.mix, state.latency_ms) == ({}, None, 0.0)


def test_without_rules_or_mix_the_global_mode_and_failure_rate_apply_as_before() -> None:
    state = FakeProviderState(failure_rate=1.0)
    assert state.plan(PHONE) == Plan("ok", state.timeout_sleep_s, fail=True)
    state.configure({"failure_rate": 0, "mode": "chaos"})
    assert set(modes(state, PHONE, 200)) == {"ok", "status:500", "garbage", "timeout"}
