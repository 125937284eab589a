"""The AWS emulator of the local stack: moto's server, with cheaper DynamoDB transactions.

Moto backs up a table before each item of a ``TransactWriteItems`` by deep-copying the
whole table, so a transaction costs time in proportion to the table's size times its
items: a 95-message fan-out page slows down as the messages table grows, and the local
stack's speed would say more about the emulator than about the service. Here a
transaction instead remembers the previous version of just the items it touches and puts
them back if it is cancelled. Behaviour is otherwise moto's own; tests that run moto
in-process (``mock_aws``) use it unpatched.

    python -m local.emulator -H 127.0.0.1 -p 5000
"""

from __future__ import annotations

import copy
import sys
import threading
from typing import Any

_in_transaction = threading.local()
# Moto's server answers requests on many threads with no isolation between them: one
# transaction at a time at least keeps transactions from interleaving with each other.
_transactions = threading.Lock()


class _CopyWithoutTableBackups:
    """Stands in for the ``copy`` module inside moto's DynamoDB models: while a
    transaction runs on this thread, the per-table backup is skipped (an item-level
    undo log replaces it); every other copy is a real one."""

    def __init__(self, table_type: type) -> None:
        self._table_type = table_type

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        if getattr(_in_transaction, "active", False) and isinstance(value, self._table_type):
            return value
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def _key_of(backend: Any, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type != "Put":
        return dict(op["Key"])
    table = backend.get_table(op["TableName"])
    key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = op["Item"][table.range_key_attr]
    return key


def install() -> None:
    from moto.dynamodb import models  # noqa: PLC0415
    from moto.dynamodb.models.table import Table  # noqa: PLC0415

    backend_type = models.DynamoDBBackend
    original = backend_type.transact_write_items
    models.copy = _CopyWithoutTableBackups(Table)  # type: ignore[assignment,attr-defined]

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        with _transactions:
            _transact(self, transact_items)

    def _transact(self: Any, transact_items: list[dict[str, Any]]) -> None:
        undo: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
        for item in transact_items:
            op_type, op = next(iter(item.items()))
            table_name = op.get("TableName")
            if not table_name or table_name not in self.tables:
                continue
            try:
                key = _key_of(self, op_type, op)
                current = self.get_item(table_name, key)
            except Exception:  # noqa: S112 - moto itself reports a malformed item
                continue
            undo.append((table_name, key, current.to_json()["Attributes"] if current else None))
        _in_transaction.active = True
        try:
            original(self, transact_items)
        except Exception:
            for table_name, key, previous in reversed(undo):
                if previous is None:
                    if self.get_item(table_name, key) is not None:
                        self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, previous)
            raise
        finally:
            _in_transaction.active = False

    backend_type.transact_write_items = transact_write_items  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    install()
    from moto import server  # noqa: PLC0415

    server.main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
