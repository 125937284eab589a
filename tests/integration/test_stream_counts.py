"""The counts follow the messages table's stream (moto's DynamoDB Streams), through the
handler Lambda calls: a moment behind the messages, then exact, whatever is delivered
again (chalicelib/domain/counting.py)."""

from __future__ import annotations

import json
from typing import Any

import app as app_module
from chalicelib.storage.messages import counts as counts_as_stored
from chalicelib.storage.models import CounterModel
from local.lambda_runner import StreamPoller
from tests.conftest import Api
from tests.integration.pipeline import Pipeline
from tests.integration.test_pipeline import add_client, add_task, recount


def test_counts_follow_the_stream_once_whatever_comes_again(services: Any, api: Api) -> None:
    for n in range(3):
        add_client(api, n)
    task = add_task(api)  # due: its messages are created at once
    # Nothing has read the stream yet: the counts lag behind the messages.
    assert counts_as_stored([task["id"]])[task["id"]].total == 0
    StreamPoller(app_module.count_messages).drain()
    counted = counts_as_stored([task["id"]])[task["id"]]
    assert (counted.total, counted.pending) == (3, 3)
    # Another reader from the stream's start: every record delivered a second time.
    assert StreamPoller(app_module.count_messages).drain() >= 3
    assert counts_as_stored([task["id"]])[task["id"]] == counted
    marks = [json.loads(item.marks) for item in CounterModel.scan() if item.marks]
    assert marks and all(len(mark) == 1 for mark in marks)  # one shard in moto


def test_sending_moves_the_counts_through_the_stream(services: Any, api: Api) -> None:
    for n in range(4):
        add_client(api, n)
    task = add_task(api)
    Pipeline(services).drain()
    poller = StreamPoller(app_module.count_messages)
    poller.drain()
    assert poller.drain() == 0  # nothing new
    found = counts_as_stored([task["id"]])[task["id"]]
    assert {"total": found.total, **found.by_status()} == recount(task["id"])
    assert found.sent == 4
