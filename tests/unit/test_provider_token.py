"""The provider token source: read once, kept a while, refreshed, never shown."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from chalicelib.provider import Provider
from chalicelib.provider_token import ParameterToken, StaticToken, token_source
from chalicelib.settings import Settings

SECRET = "s3cr3t-token-value"


class FakeSsm:
    def __init__(self, *values: str, delay: float = 0.0) -> None:
        self.values = list(values)
        self.calls: list[dict[str, Any]] = []
        self.delay = delay
        self.fail = False

    def get_parameter(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("Parameter Store is down")
        value = self.values.pop(0) if len(self.values) > 1 else self.values[0]
        return {"Parameter": {"Name": kwargs["Name"], "Type": "SecureString", "Value": value}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_parameter_is_read_with_decryption_once_and_then_cached() -> None:
    ssm = FakeSsm(SECRET)
    token = ParameterToken("/notify/dev/sender-token", lambda: ssm)
    assert ssm.calls == []  # nothing is read before the first use
    assert token() == SECRET
    assert token() == SECRET
    assert ssm.calls == [{"Name": "/notify/dev/sender-token", "WithDecryption": True}]


def test_a_rotated_token_is_picked_up_after_the_max_age() -> None:
    ssm = FakeSsm("old", "new")
    clock = Clock()
    token = ParameterToken("/p", lambda: ssm, max_age_seconds=900, monotonic=clock)
    assert token() == "old"
    clock.now += 899
    assert token() == "old"
    clock.now += 1
    assert token() == "new"
    assert len(ssm.calls) == 2


def test_an_invalidated_token_is_read_again_on_the_next_call_before_the_max_age() -> None:
    ssm = FakeSsm("old", "new")
    clock = Clock()
    token = ParameterToken("/p", lambda: ssm, max_age_seconds=900, monotonic=clock)
    token.invalidate()  # nothing read yet: nothing to forget
    assert ssm.calls == []
    assert token() == "old"
    clock.now += 1
    token.invalidate()  # the provider refused it (401)
    assert len(ssm.calls) == 1  # read on the next call, not at once
    assert token() == "new"
    assert token() == "new"  # then cached again
    assert len(ssm.calls) == 2

    static = token_source(_settings(SENDER_TOKEN="local-token"))
    assert isinstance(static, StaticToken)
    static.invalidate()  # nothing to read again
    assert static() == "local-token"


def test_a_failed_refresh_keeps_the_cached_token_but_a_failed_first_read_raises() -> None:
    ssm = FakeSsm(SECRET)
    clock = Clock()
    token = ParameterToken("/p", lambda: ssm, max_age_seconds=60, monotonic=clock)
    assert token() == SECRET
    ssm.fail = True
    clock.now += 61
    assert token() == SECRET

    cold = ParameterToken("/p", lambda: ssm)
    with pytest.raises(RuntimeError):
        cold()


def test_parallel_first_sends_read_the_parameter_once() -> None:
    ssm = FakeSsm(SECRET, delay=0.05)
    token = ParameterToken("/p", lambda: ssm)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(token())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [SECRET] * 8
    assert len(ssm.calls) == 1


def test_neither_the_source_nor_the_provider_shows_the_token() -> None:
    ssm = FakeSsm(SECRET)
    token = ParameterToken("/notify/dev/sender-token", lambda: ssm)
    token()
    provider = Provider("https://provider.example", token, 1.0, 1.0)
    assert SECRET not in repr(token)
    assert SECRET not in repr(provider)


def _settings(**env: str) -> Settings:
    return Settings.from_env({"STAGE": "dev", **env})


def test_without_a_parameter_name_the_token_comes_from_the_environment() -> None:
    source = token_source(_settings(SENDER_TOKEN="local-token"))
    assert source() == "local-token"


def test_with_a_parameter_name_nothing_is_read_until_the_first_send() -> None:
    # The unit tests block the network: building the source must not touch AWS.
    settings = _settings(SENDER_TOKEN="ignored", SENDER_TOKEN_PARAMETER="/notify/dev/sender-token")
    source = token_source(settings)
    assert isinstance(source, ParameterToken)
    assert source.name == "/notify/dev/sender-token"
    Provider.from_settings(settings)
