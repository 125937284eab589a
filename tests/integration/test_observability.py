"""Logs an operator can search by id, EMF metrics, and the Prometheus endpoint (issue 10)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import app as app_module
from chalicelib import logs
from local.fake_provider import FakeProviderState
from local.lambda_runner import LambdaContext, sqs_event
from tests.conftest import SENDER_TOKEN, Api, FrozenClock
from tests.integration.pipeline import Pipeline
from tests.integration.test_pipeline import add_client, add_task


class Lines(logging.Handler):
    """Every line the service logs, formatted exactly as in CloudWatch."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logs.JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]

    def find(self, message: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("message") == message]


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    root = logging.getLogger(logs.LOGGER_NAME)
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


@pytest.fixture
def pipeline(services: Any, api: Api) -> Pipeline:
    return Pipeline(services)


def test_log_lines_carry_the_ids_of_what_they_are_about(
    api: Api,
    pipeline: Pipeline,
    provider: FakeProviderState,
    clock: FrozenClock,
    lines: Lines,
    api_key: str,
) -> None:
    ok_client = add_client(api, 1)
    retried_client = add_client(api, 2, code="901")
    assert api.patch(f"/api/clients/{ok_client}", {"tag": "vip"}).status_code == 200
    (updated,) = lines.find("client updated")
    assert updated["client_id"] == ok_client
    assert updated["request_id"]

    task = add_task(api, filter={"codes": ["900"]}, end_time="2026-11-28T12:30:00Z")
    (created,) = lines.find("task created")
    assert created["task_id"] == task["id"]
    pipeline.drain()
    (sent,) = lines.find("message sent")
    assert (sent["task_id"], sent["client_id"], sent["message_id"]) == (
        task["id"],
        ok_client,
        task["id"] * 10**10 + ok_client,
    )
    (call,) = lines.find("provider call")
    assert call["message_id"] == sent["message_id"]
    assert call["attempt"] == 1
    assert call["http_status"] == 200
    assert call["latency_ms"] >= 0

    retried = add_task(api, filter={"codes": ["901"]}, end_time="2026-11-28T12:30:00Z")
    provider.mode = "status:503"
    pipeline.drain()
    (retry,) = lines.find("message retry scheduled")
    assert (retry["task_id"], retry["client_id"]) == (retried["id"], retried_client)
    assert retry["attempt"] == 1
    assert retry["error"] == "HTTP 503"

    clock.advance(minutes=31)
    pipeline.drain()
    (expired,) = lines.find("message expired")
    assert expired["reason"] == "the task's end has passed"
    assert (expired["task_id"], expired["client_id"]) == (retried["id"], retried_client)
    assert expired["message_id"] == retried["id"] * 10**10 + retried_client

    everything = "\n".join(lines.lines)
    for phone in ("79000000001", "79000000002"):
        assert phone not in everything
    assert SENDER_TOKEN not in everything
    assert api_key not in everything
    assert "7900***0001" in everything  # masked where a phone is worth showing


def test_sender_lines_carry_the_lambda_invocation_id(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, lines: Lines
) -> None:
    add_client(api, 1)
    add_client(api, 2)
    task = add_task(api)
    jobs = pipeline.receive()
    assert len(jobs) == 2  # two calls: they run on the sender's thread pool
    event = sqs_event(jobs, pipeline.arn, "us-east-1")
    app_module.send(event, LambdaContext("send", timeout_seconds=30, aws_request_id="invoc-1"))
    calls = lines.find("provider call")
    sent = lines.find("message sent")
    assert len(calls) == len(sent) == 2
    for line in [*calls, *sent]:
        assert (line["function_request_id"], line["task_id"]) == ("invoc-1", task["id"])
    (batch,) = lines.find("send batch")
    assert batch["function_request_id"] == "invoc-1"
    logs.get_logger("test").info("after the invocation")
    (after,) = lines.find("after the invocation")
    assert "function_request_id" not in after
    # An API request's lines carry API Gateway's id and the invocation's.
    (request,) = [r for r in lines.find("request") if r["route"] == "/api/tasks"]
    (created,) = lines.find("task created")
    assert created["request_id"] == request["request_id"]
    assert created["function_request_id"] == request["function_request_id"]


def test_handlers_publish_embedded_metrics(
    api: Api, pipeline: Pipeline, provider: FakeProviderState, lines: Lines
) -> None:
    add_client(api, 1)
    add_task(api)
    pipeline.drain()
    documents = [r for r in lines.records() if "_aws" in r]
    sender = [d for d in documents if "MessagesSent" in d]
    assert sender
    doc = sender[-1]
    definition = doc["_aws"]["CloudWatchMetrics"][0]
    assert definition["Namespace"] == "NotificationService"
    assert definition["Dimensions"] == [["Service", "Stage"]]
    names = {metric["Name"]: metric["Unit"] for metric in definition["Metrics"]}
    assert names["ProviderLatency"] == "Milliseconds"
    assert doc["MessagesSent"] == [1.0]  # Powertools writes every metric as a list of values
    assert doc["Stage"] == "local"
    assert isinstance(doc["ProviderLatency"], list)
    lag = [d for d in documents if "DispatchLag" in d]
    assert lag
    assert lag[0]["DispatchLag"] == [3600.0]  # due at 11:00, first sent at 12:00


def test_metrics_endpoint_speaks_prometheus(
    api: Api, pipeline: Pipeline, provider: FakeProviderState
) -> None:
    for n in range(3):
        add_client(api, n)
    add_task(api)
    pipeline.drain()
    add_task(api, start_time="2026-11-28T13:00:00Z")
    response = api.get("/api/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(response.body.decode())}
    messages = {s.labels["status"]: s.value for s in families["notify_messages"].samples}
    assert messages == {
        "pending": 0,
        "sent": 3,
        "failed": 0,
        "expired": 0,
        "cancelled": 0,
        "suppressed": 0,
    }
    tasks = {s.labels["status"]: s.value for s in families["notify_tasks"].samples}
    assert tasks == {"scheduled": 1, "running": 1, "finished": 0, "paused": 0, "cancelled": 0}
    assert families["notify_queue_jobs"].samples[0].value == 0
    assert families["notify_messages_created"].samples[0].value == 3


def test_metrics_endpoint_needs_a_key(anonymous: Api) -> None:
    assert anonymous.get("/api/metrics").status_code == 401
