"""The AWS emulator of the local stack: moto's server, with cheaper DynamoDB transactions.

Moto backs up a table before each item of a ``TransactWriteItems`` by deep-copying the
whole table, so a transaction costs time in proportion to the table's size times its
items: a 95-message fan-out page slows down as the messages table grows, and the local
stack's speed would say more about the emulator than about the service. Here a
transaction instead remembers the previous version of just the items it touches and puts
them back if it is cancelled. Item writes (put, update, delete and transactions) also run
one at a time: moto's server answers on many threads, and an ``UpdateItem`` (an atomic
counter's ``ADD``, a conditional update) is a read then a write there, so two concurrent
ones could both read the old item (two clients got the same id). Behaviour is otherwise
moto's own; tests that run moto in-process (``mock_aws``) use it unpatched.

    python -m local.emulator -H 127.0.0.1 -p 5000
"""

from __future__ import annotations

import copy
import functools
import sys
import threading
from collections.abc import Callable
from typing import Any

_in_transaction = threading.local()
# Moto's server answers requests on many threads with no isolation between them: one
# item write (or transaction) at a time makes each atomic, as DynamoDB's are. Reentrant:
# a transaction writes its items through the same put/update/delete.
_writes = threading.RLock()


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
        with _writes:
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
    for name in ("put_item", "update_item", "delete_item"):
        setattr(backend_type, name, _one_write_at_a_time(getattr(backend_type, name)))


def _one_write_at_a_time(write: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(write)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _writes:
            return write(*args, **kwargs)

    return locked


def main(argv: list[str] | None = None) -> None:
    install()
    from moto import server  # noqa: PLC0415

    server.main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
