"""The emulator's cheaper transactions still apply to the pinned moto (issue 16).

Moto backs up every table a ``TransactWriteItems`` touches by deep-copying it; measured on
2026-11-30 (docs/performance.md) a two-item transaction took 94 ms on a 1,000-item table
and 2.0 s on a 20,000-item one, against 5-8 ms with ``local/emulator.py``'s undo log: a
local fan-out of 5,000 clients failed on 5 s read timeouts without it. So the patch stays;
these tests fail, rather than the local stack silently slowing down, when a moto upgrade
changes what it relies on.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import pytest

from local import emulator


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch) -> Any:
    from moto.dynamodb import models  # noqa: PLC0415

    # Put moto back as it was afterwards: other tests run it unpatched (mock_aws).
    monkeypatch.setattr(models, "copy", models.copy)
    monkeypatch.setattr(
        models.DynamoDBBackend, "transact_write_items", models.DynamoDBBackend.transact_write_items
    )
    emulator.install()
    from moto.moto_server.werkzeug_app import (  # noqa: PLC0415
        DomainDispatcherApplication,
        create_backend_app,
    )

    call = emulator.in_process(DomainDispatcherApplication(create_backend_app), "127.0.0.1:1")
    table = {
        "TableName": "transactions",
        "KeySchema": [{"AttributeName": "k", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "k", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
    }
    call("dynamodb", "us-east-1", "DeleteTable", {"TableName": "transactions"})
    assert call("dynamodb", "us-east-1", "CreateTable", table)[0] == 200
    return call


def test_moto_still_backs_up_tables_through_its_copy_module() -> None:
    from moto.dynamodb import models  # noqa: PLC0415

    source = inspect.getsource(models.DynamoDBBackend.transact_write_items)
    assert "copy.deepcopy(" in source, (
        "moto no longer deep-copies tables in transact_write_items: re-measure a transaction"
        " on a large table and revisit local/emulator.py's install()"
    )
    assert emulator._backs_up_whole_tables(models)


def test_a_moto_with_other_transactions_is_left_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    """An upgrade that changed them runs moto's own transactions (slower, still correct)
    instead of breaking the local stack."""
    from moto.dynamodb import models  # noqa: PLC0415

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        """An upgraded moto that no longer copies whole tables."""

    monkeypatch.setattr(models.DynamoDBBackend, "transact_write_items", transact_write_items)
    assert emulator.install() is False
    assert models.DynamoDBBackend.transact_write_items is transact_write_items
    assert models.copy is copy  # type: ignore[attr-defined]

    monkeypatch.undo()
    monkeypatch.setattr(models, "copy", object(), raising=False)
    original = models.DynamoDBBackend.transact_write_items
    assert emulator.install() is False
    assert models.DynamoDBBackend.transact_write_items is original


def add(key: str) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": "transactions",
            "Key": {"k": {"S": key}},
            "UpdateExpression": "ADD n :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
        }
    }


def test_a_transaction_copies_no_table_and_a_cancelled_one_changes_nothing(
    patched: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.dynamodb.models.table import Table  # noqa: PLC0415

    def no_table_copies(self: Table, memo: Any) -> Table:
        raise AssertionError("a transaction deep-copied a whole table")

    monkeypatch.setattr(Table, "__deepcopy__", no_table_copies, raising=False)
    assert (
        patched("dynamodb", "us-east-1", "TransactWriteItems", {"TransactItems": [add("a")]})[0]
        == 200
    )
    missing = {
        "ConditionCheck": {
            "TableName": "transactions",
            "Key": {"k": {"S": "missing"}},
            "ConditionExpression": "attribute_exists(k)",
        }
    }
    status, _ = patched(
        "dynamodb", "us-east-1", "TransactWriteItems", {"TransactItems": [add("a"), missing]}
    )
    assert status == 400
    status, item = patched(
        "dynamodb", "us-east-1", "GetItem", {"TableName": "transactions", "Key": {"k": {"S": "a"}}}
    )
    assert item["Item"]["n"] == {"N": "1"}
