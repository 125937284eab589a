"""The emulator's data outlives it (``local/journal.py``): every write it confirmed, even
when it is killed outright, and nothing it refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from local.supervisor import ChildProcess, free_port

pytestmark = pytest.mark.e2e


@dataclass
class Emulator:
    process: ChildProcess
    dynamodb: Any
    sqs: Any


def start(data: Path, *extra: str) -> Emulator:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = ChildProcess(
        "emulator",
        [sys.executable, "-m", "local.emulator", "-p", str(port), "--data", str(data), *extra],
        {**os.environ},
        ready_url=f"{url}/moto-api/",
        log_file=data.parent / "emulator.log",
    )
    process.start()
    options = {
        "endpoint_url": url,
        "region_name": "us-east-1",
        "aws_access_key_id": "local",
        "aws_secret_access_key": "local",
    }
    return Emulator(process, boto3.client("dynamodb", **options), boto3.client("sqs", **options))


def kill(emulator: Emulator) -> None:
    assert emulator.process.pid is not None
    os.killpg(emulator.process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while emulator.process.alive():
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.fixture
def data(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


def create_table(emulator: Emulator) -> None:
    emulator.dynamodb.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "k", "AttributeType": "S"},
            {"AttributeName": "g", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_g",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def add(emulator: Emulator, key: str, amount: int = 1) -> None:
    emulator.dynamodb.update_item(
        TableName="t",
        Key={"k": {"S": key}},
        UpdateExpression="ADD n :n SET g = :g",
        ExpressionAttributeValues={":n": {"N": str(amount)}, ":g": {"S": "all"}},
    )


def items(emulator: Emulator) -> dict[str, int]:
    found = emulator.dynamodb.query(
        TableName="t",
        IndexName="by_g",
        KeyConditionExpression="g = :g",
        ExpressionAttributeValues={":g": {"S": "all"}},
    )["Items"]
    return {item["k"]["S"]: int(item["n"]["N"]) for item in found}


def test_confirmed_writes_survive_a_kill_and_refused_ones_leave_nothing(data: Path) -> None:
    first = start(data)
    try:
        create_table(first)
        for key in ("a", "b", "c"):
            add(first, key)
        add(first, "a", 5)
        first.dynamodb.delete_item(TableName="t", Key={"k": {"S": "c"}})
        with pytest.raises(ClientError):  # refused: not journaled
            first.dynamodb.put_item(
                TableName="t",
                Item={"k": {"S": "a"}, "n": {"N": "100"}, "g": {"S": "all"}},
                ConditionExpression="attribute_not_exists(k)",
            )
        with pytest.raises(ClientError):  # a cancelled transaction: nothing of it
            first.dynamodb.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": "t",
                            "Key": {"k": {"S": "b"}},
                            "UpdateExpression": "ADD n :n",
                            "ExpressionAttributeValues": {":n": {"N": "10"}},
                        }
                    },
                    {
                        "ConditionCheck": {
                            "TableName": "t",
                            "Key": {"k": {"S": "missing"}},
                            "ConditionExpression": "attribute_exists(k)",
                        }
                    },
                ]
            )
    finally:
        kill(first)

    second = start(data)
    try:
        assert items(second) == {"a": 6, "b": 1}  # the index was rebuilt too
        add(second, "b")  # and it goes on from there
    finally:
        second.process.stop()

    third = start(data)
    try:
        assert items(third) == {"a": 6, "b": 2}
    finally:
        third.process.stop()


def test_queued_jobs_come_back_and_deleted_ones_do_not(data: Path) -> None:
    first = start(data)
    try:
        url = first.sqs.create_queue(QueueName="jobs")["QueueUrl"]
        first.sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"job{i}"} for i in range(6)]
        )
        first.sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=120)
        held = first.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=3)["Messages"]
        assert len(held) == 3
        first.sqs.delete_message(QueueUrl=url, ReceiptHandle=held[0]["ReceiptHandle"])
        first.sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": "x", "ReceiptHandle": held[1]["ReceiptHandle"]}]
        )
    finally:
        kill(first)
    deleted = {held[0]["Body"], held[1]["Body"]}

    second = start(data)
    try:
        url = second.sqs.get_queue_url(QueueName="jobs")["QueueUrl"]
        bodies: list[str] = []
        for _ in range(4):
            answer = second.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
            bodies += [message["Body"] for message in answer.get("Messages", [])]
        # The one held at the kill comes back at once, as after a visibility timeout.
        assert sorted(bodies) == sorted({f"job{i}" for i in range(6)} - deleted)
        attributes = second.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
        assert attributes["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"
    finally:
        second.process.stop()


def test_a_snapshot_while_running_and_the_writes_after_it(data: Path) -> None:
    first = start(data, "--snapshot-every", "7")
    try:
        create_table(first)
        for n in range(30):
            add(first, f"k{n % 4}")
    finally:
        kill(first)
    # Snapshots were written while it ran; the writes after the last one are replayed
    # once, not on top of the snapshot that holds them already.
    second = start(data, "--snapshot-every", "7")
    try:
        assert items(second) == {"k0": 8, "k1": 8, "k2": 7, "k3": 7}
    finally:
        second.process.stop()


def test_a_line_cut_short_by_a_kill_is_not_replayed(data: Path) -> None:
    first = start(data)
    try:
        create_table(first)
        add(first, "a")
    finally:
        kill(first)
    (journal,) = data.glob("journal-*.jsonl")
    with journal.open("ab") as out:  # a write the kill interrupted: never answered
        out.write(b'{"s":"dynamodb","r":"us-east-1","op":"PutItem","b":{"TableName":"t"')
    second = start(data)
    try:
        assert items(second) == {"a": 1}
    finally:
        second.process.stop()


def test_fresh_starts_empty_and_one_folder_serves_one_emulator(data: Path) -> None:
    first = start(data)
    try:
        create_table(first)
        port = free_port()
        other = subprocess.run(
            [sys.executable, "-m", "local.emulator", "-p", str(port), "--data", str(data)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert other.returncode != 0
        assert "in use by another emulator" in other.stderr + other.stdout
    finally:
        first.process.stop()
    second = start(data, "--fresh")
    try:
        assert second.dynamodb.list_tables()["TableNames"] == []
    finally:
        second.process.stop()
