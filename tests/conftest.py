"""Shared fixtures: an emulated AWS account (moto), a frozen clock, and the API client."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client
from moto import mock_aws

import app as app_module
from chalicelib.bootstrap import bootstrap
from chalicelib.settings import reset_settings
from chalicelib.storage import messages as message_store
from chalicelib.storage import timeline as timeline_store
from local.fake_provider import FakeProvider, FakeProviderState
from local.gateway import SpecLocalGateway
from local.lambda_runner import StreamPoller
from local.resources import ensure_resources
from local.run import stage_environment

ROOT = Path(__file__).resolve().parent.parent
STAGE = "local"


@pytest.fixture(scope="session", autouse=True)
def _run_files_of_the_tests(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Stacks and emulators the tests start keep their run files and data (``local/state.py``)
    in a folder of this session, never in the developer's: a test never restores the
    developer's data, nor leaves its own behind."""
    before = os.environ.get("NOTIFY_STATE_DIR")
    os.environ["NOTIFY_STATE_DIR"] = str(tmp_path_factory.mktemp("notify-state"))
    yield
    if before is None:
        os.environ.pop("NOTIFY_STATE_DIR", None)
    else:
        os.environ["NOTIFY_STATE_DIR"] = before


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by its folder: unit, sim, integration, e2e or infra."""
    for item in items:
        for kind in ("unit", "sim", "integration", "e2e", "infra"):
            if f"tests/{kind}/" in item.nodeid:
                item.add_marker(getattr(pytest.mark, kind))


class FrozenClock:
    """A clock that only moves when a test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))


SENDER_TOKEN = "test-sender-token"
# Test-only settings: no SQS delays (the clock is frozen; jobs carry their own
# not-before time), no delete grace, small fan-out pages, a short provider timeout.
TEST_SETTINGS = {
    "QUEUE_MAX_DELAY_SECONDS": "0",
    "DELETE_GRACE_SECONDS": "0",
    "FANOUT_PAGE_SIZE": "5",
    "PROVIDER_READ_TIMEOUT": "0.5",
    "PROVIDER_CONNECT_TIMEOUT": "0.5",
    "MAX_ATTEMPTS": "4",
    "DISPATCH_BUDGET_SECONDS": "2",
    "SENDER_TOKEN": SENDER_TOKEN,
}


@pytest.fixture(scope="session")
def fake_provider() -> Iterator[FakeProvider]:
    provider = FakeProvider(state=FakeProviderState(token=SENDER_TOKEN), quiet=True)
    provider.start()
    yield provider
    provider.stop()


@pytest.fixture
def provider(fake_provider: FakeProvider) -> FakeProviderState:
    """The fake provider's state, fresh for each test."""
    fake_provider.state.reset()
    fake_provider.state.timeout_sleep_s = 1.0
    return fake_provider.state


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, fake_provider: FakeProvider) -> Iterator[None]:
    """The local stage's environment with fake credentials and no real endpoint."""
    for key, value in {**stage_environment(), **TEST_SETTINGS}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SENDER_URL", fake_provider.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    # chalice.test.Client sets the stage's variables during each call, the emulator's
    # AWS_ENDPOINT_URL among them, which botocore would use for a client built then:
    # here every call goes to moto's in-process mock instead.
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    reset_settings()
    yield
    reset_settings()


@pytest.fixture
def one_moto_write_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Moto in-process applies DynamoDB writes with no isolation (a transaction copies
    every table while another thread writes: "dictionary changed size during
    iteration"), and an import applies a chunk's phones side by side. Writes here run
    one at a time, as the local emulator runs them (``local/emulator.py``) and as
    DynamoDB applies each write atomically."""
    from moto.dynamodb.models import DynamoDBBackend  # noqa: PLC0415

    lock = threading.RLock()
    for name in ("transact_write_items", "put_item", "update_item", "delete_item"):
        original = getattr(DynamoDBBackend, name)

        def locked(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(*args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, locked)


@pytest.fixture
def services(
    aws_env: None,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
    one_moto_write_at_a_time: None,
) -> Iterator[Any]:
    """Services wired on moto with the frozen clock, tables created, used by the app.

    The counts (and the timeline) follow the messages table's stream: each read of them
    first hands the stream's new records to the app's counting handler
    (``local/lambda_runner.py``'s poller, as Lambda's mapping would), so a test sees them
    once the stream caught up.
    """
    with mock_aws():
        wired = bootstrap(clock=clock)
        ensure_resources(wired)
        app_module.use_services(wired)
        poller = StreamPoller(app_module.count_messages)
        read_counts = message_store.counts
        read_minutes = timeline_store.stored_minutes

        def counts_caught_up(task_ids: Sequence[int]) -> Any:
            poller.drain()
            return read_counts(task_ids)

        def minutes_caught_up(task_id: int) -> Any:
            poller.drain()
            return read_minutes(task_id)

        monkeypatch.setattr(message_store, "counts", counts_caught_up)
        monkeypatch.setattr(timeline_store, "stored_minutes", minutes_caught_up)
        try:
            yield wired
        finally:
            app_module.use_services(None)


class Api:
    """Thin JSON helper over ``chalice.test.Client``; sends the test key unless told not to."""

    def __init__(self, client: Any, key: str | None) -> None:
        self._client = client
        self.key = key

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | str | None = None,
        headers: dict[str, str | None] | None = None,
    ) -> Any:
        sent_headers = {"Content-Type": "application/json"}
        if self.key is not None:
            sent_headers["Authorization"] = f"Bearer {self.key}"
        sent_headers.update(headers or {})
        sent_headers = {k: v for k, v in sent_headers.items() if v is not None}
        payload = raw if raw is not None else (json.dumps(body) if body is not None else None)
        return self._client.http.request(method, path, headers=sent_headers, body=payload)

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, body, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("PATCH", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)


@pytest.fixture
def api_key(services: Any) -> str:
    return str(services.api_keys.issue("tests").key)


@pytest.fixture
def test_client(services: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """chalice.test.Client behind the same gateway responses as ``make run``."""
    monkeypatch.chdir(ROOT)  # chalice.test.Client reads .chalice/config.json from here
    with Client(app_module.app, stage_name=STAGE) as client:
        http_client = client.http
        http_client._local_gateway = SpecLocalGateway(app_module.app, http_client._config)
        yield client


@pytest.fixture
def api(test_client: Client, api_key: str) -> Api:
    return Api(test_client, api_key)


@pytest.fixture
def anonymous(test_client: Client) -> Api:
    return Api(test_client, None)
