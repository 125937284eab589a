"""The provider token from SSM Parameter Store (moto): read on the first send, cached."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from chalicelib.provider_token import ssm_client
from chalicelib.settings import reset_settings
from local.fake_provider import FakeProviderState
from tests.conftest import SENDER_TOKEN, Api
from tests.integration.pipeline import Pipeline, messages_of

PARAMETER = "/notify/local/sender-token"
REGION = "us-east-1"


@pytest.fixture
def token_in_ssm(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage names the parameter; the environment holds a token that would fail."""
    monkeypatch.setenv("SENDER_TOKEN_PARAMETER", PARAMETER)
    monkeypatch.setenv("SENDER_TOKEN", "not-the-token")
    reset_settings()


@pytest.fixture
def get_parameter_calls(token_in_ssm: None) -> Iterator[list[str]]:
    calls: list[str] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(params["Name"])

    events = ssm_client(REGION, None).meta.events
    events.register("provide-client-params.ssm.GetParameter", record)
    yield calls
    events.unregister("provide-client-params.ssm.GetParameter", record)


def add_client(api: Api, n: int) -> None:
    body = {"phone": f"7{9000000000 + n}", "code": "900", "tag": "", "utc": "UTC"}
    assert api.post("/api/clients/", body).status_code == 201


def start_task(api: Api) -> int:
    body = {"start_time": "2026-11-28T11:00:00Z", "end_time": "2026-11-28T14:00:00Z", "text": "Hi"}
    response = api.post("/api/tasks/", body)
    assert response.status_code == 201
    return int(response.json_body["id"])


def test_token_is_read_from_ssm_once_for_many_sends_and_never_logged(
    token_in_ssm: None,
    get_parameter_calls: list[str],
    services: Any,
    api: Api,
    provider: FakeProviderState,
    caplog: pytest.LogCaptureFixture,
) -> None:
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=PARAMETER, Value=SENDER_TOKEN, Type="SecureString"
    )
    pipeline = Pipeline(services)
    add_client(api, 1)
    add_client(api, 2)
    start_task(api)  # due at once: the API fans out, nothing is sent yet
    assert get_parameter_calls == []

    pipeline.drain()  # one batch: two parallel sends
    start_task(api)
    pipeline.drain()  # a later invocation in the same container

    sends = provider.sends()
    assert len(sends) == 4
    assert all(call.accepted for call in sends)
    assert {call.authorization for call in sends} == {f"Bearer {SENDER_TOKEN}"}
    assert get_parameter_calls == [PARAMETER]
    assert "provider token read" in caplog.messages
    for record in caplog.records:
        assert SENDER_TOKEN not in str(record.__dict__)


def test_a_missing_parameter_fails_the_jobs_for_redelivery_not_the_messages(
    token_in_ssm: None, services: Any, api: Api, provider: FakeProviderState
) -> None:
    pipeline = Pipeline(services)
    add_client(api, 1)
    task_id = start_task(api)
    report = pipeline.drain()
    assert report.failed_records == 1  # SQS delivers it again later
    assert report.outcomes == Counter({"error": 1})
    assert provider.sends() == []
    (message,) = messages_of(task_id).values()
    assert (message.status, message.attempts) == ("pending", 0)


def test_a_rotated_token_is_read_again_after_a_401_not_after_its_cache_age(
    token_in_ssm: None,
    get_parameter_calls: list[str],
    services: Any,
    api: Api,
    provider: FakeProviderState,
    clock: Any,
) -> None:
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(Name=PARAMETER, Value="old-token", Type="SecureString")
    pipeline = Pipeline(services)
    add_client(api, 1)
    task_id = start_task(api)
    # The provider already wants the new token; the parameter is rotated a moment later.
    report = pipeline.drain()
    assert report.outcomes["retry"] == 1
    assert provider.sends()[-1].status == 401
    ssm.put_parameter(Name=PARAMETER, Value=SENDER_TOKEN, Type="SecureString", Overwrite=True)
    clock.advance(minutes=1)  # the retry is due; the 15-minute cache is far from over
    pipeline.drain()
    (message,) = messages_of(task_id).values()
    assert (message.status, message.attempts) == ("sent", 2)
    assert get_parameter_calls == [PARAMETER, PARAMETER]
