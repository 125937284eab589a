"""The local emulator's cheaper transactions are still all-or-nothing."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from local.state import state_dir
from local.supervisor import ChildProcess, free_port


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    emulator = ChildProcess(
        "emulator",
        [sys.executable, "-m", "local.emulator", "-H", "127.0.0.1", "-p", str(port)],
        {**os.environ},
        ready_url=f"{url}/moto-api/",
        log_file=state_dir() / "test-emulator.log",
    )
    emulator.start()
    try:
        client = boto3.client(
            "dynamodb",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        client.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client
    finally:
        emulator.stop()


def item(client: Any, key: str) -> dict[str, Any] | None:
    return client.get_item(TableName="t", Key={"k": {"S": key}}, ConsistentRead=True).get("Item")


def test_cancelled_transaction_changes_nothing(dynamodb: Any) -> None:
    dynamodb.put_item(TableName="t", Item={"k": {"S": "old"}, "v": {"N": "1"}})
    dynamodb.put_item(TableName="t", Item={"k": {"S": "guard"}})
    with pytest.raises(ClientError) as caught:
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "t", "Item": {"k": {"S": "new"}, "v": {"N": "1"}}}},
                {
                    "Update": {
                        "TableName": "t",
                        "Key": {"k": {"S": "old"}},
                        "UpdateExpression": "SET v = :two",
                        "ExpressionAttributeValues": {":two": {"N": "2"}},
                    }
                },
                {
                    "ConditionCheck": {
                        "TableName": "t",
                        "Key": {"k": {"S": "guard"}},
                        "ConditionExpression": "attribute_not_exists(k)",
                    }
                },
            ]
        )
    assert caught.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert item(dynamodb, "new") is None
    assert item(dynamodb, "old") == {"k": {"S": "old"}, "v": {"N": "1"}}


def test_successful_transaction_applies_every_item(dynamodb: Any) -> None:
    dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": "t", "Item": {"k": {"S": "a"}}}},
            {"Put": {"TableName": "t", "Item": {"k": {"S": "b"}}}},
        ]
    )
    assert item(dynamodb, "a") is not None
    assert item(dynamodb, "b") is not None
