"""The AWS emulator of the local stack: moto's server, with cheaper DynamoDB transactions,
one DynamoDB write at a time, and (``--data DIR``) its data kept across restarts.

Moto backs up a table before each item of a ``TransactWriteItems`` by deep-copying the
whole table, so a transaction costs time in proportion to the table's size times its
items: a 95-message fan-out page slows down as the messages table grows, and the local
stack's speed would say more about the emulator than about the service. Here a
transaction instead remembers the previous version of just the items it touches and puts
them back if it is cancelled.

DynamoDB writes (put, update, delete, batches and transactions) run one at a time, in a
WSGI layer in front of moto's application: moto's server answers on many threads, and an
``UpdateItem`` (an atomic counter's ``ADD``, a conditional update) is a read then a write
there, so two concurrent ones could both read the old item (two clients got the same id).
The same layer appends each accepted write to the journal (``local/journal.py``), in the
order the writes were applied. Behaviour is otherwise moto's own; tests that run moto
in-process (``mock_aws``) use it unpatched.

    python -m local.emulator -H 127.0.0.1 -p 5000 [--data DIR [--fresh]]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import inspect
import io
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from werkzeug.datastructures import Headers
from werkzeug.serving import run_simple
from werkzeug.test import EnvironBuilder, run_wsgi_app
from werkzeug.wsgi import get_input_stream

from chalicelib.settings import Settings
from local.capacity import IndexSpec, write_units
from local.journal import (
    DYNAMODB_ITEM_WRITES,
    DYNAMODB_WRITES,
    SNAPSHOT_EVERY,
    SQS_RECORDED,
    Call,
    Journal,
)

_in_transaction = threading.local()
# Moto's server answers requests on many threads with no isolation between them: one
# DynamoDB write request at a time makes each atomic, as DynamoDB's are, and gives the
# journal the order they were applied in.
_writes = threading.Lock()

StartResponse = Callable[..., Any]


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


def _backs_up_whole_tables(models: Any) -> bool:
    """Whether this moto is the one the cheaper transactions were written against: its
    ``transact_write_items`` deep-copies each table through the module's ``copy``."""
    original = getattr(getattr(models, "DynamoDBBackend", None), "transact_write_items", None)
    if original is None or getattr(models, "copy", None) is not copy:
        return False
    try:
        source = inspect.getsource(original)
    except (OSError, TypeError):
        return False
    return "copy.deepcopy(" in source and "self.tables[" in source


def install() -> bool:
    """Make moto's transactions cheap; True when done. A moto whose transactions no longer
    look as expected (an upgrade changed them, or fixed the cost) is left as it is, with
    one line saying so: the emulator stays correct, only slower on large tables
    (docs/performance.md, "The emulator's transactions", has the figures)."""
    from moto.dynamodb import models  # noqa: PLC0415
    from moto.dynamodb.models.table import Table  # noqa: PLC0415

    if not _backs_up_whole_tables(models):
        print(
            "[emulator] moto's DynamoDB transactions are not the shape local/emulator.py "
            "knows: running them unchanged",
            file=sys.stderr,
            flush=True,
        )
        return False
    backend_type = models.DynamoDBBackend
    original = backend_type.transact_write_items
    models.copy = _CopyWithoutTableBackups(Table)  # type: ignore[assignment,attr-defined]

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
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
    return True


def _region(environ: dict[str, Any]) -> str:
    # SigV4: "AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request, ..."
    credential = str(environ.get("HTTP_AUTHORIZATION", "")).partition("Credential=")[2]
    parts = credential.split("/")
    return parts[2] if len(parts) > 3 else "us-east-1"


def _parsed(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


# The header an item write's answer carries: its write request units by table and index,
# as DynamoDB would bill them (local/capacity.py), e.g. {"messages": 1, "messages/by_x": 2}.
WRITE_UNITS_HEADER = "X-Local-Write-Units"


def _touched(request: dict[str, Any], op: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, table, key or item) of each item a write request names."""
    if op in ("PutItem", "UpdateItem", "DeleteItem"):
        kind = op.removesuffix("Item")
        return [(kind, request["TableName"], request["Item" if kind == "Put" else "Key"])]
    if op == "BatchWriteItem":
        found = []
        for table, writes in request.get("RequestItems", {}).items():
            for write in writes:
                if "PutRequest" in write:
                    found.append(("Put", table, write["PutRequest"]["Item"]))
                elif "DeleteRequest" in write:
                    found.append(("Delete", table, write["DeleteRequest"]["Key"]))
        return found
    found = []
    for entry in request.get("TransactItems", []):
        kind, body = next(iter(entry.items()))
        found.append((kind, body["TableName"], body["Item" if kind == "Put" else "Key"]))
    return found


class WriteUnits:
    """Reads each item a write touches before and after it (under the write lock), and
    what DynamoDB would bill for it."""

    def __init__(self, region: str, request: dict[str, Any], op: str) -> None:
        self._op = op
        try:
            self._backend = _backend(region)
            self._items = [
                (table, self._key(table, kind, item)) for kind, table, item in _touched(request, op)
            ]
            self._before = [self._image(table, key) for table, key in self._items]
        except Exception:  # a malformed request: moto answers it with its own error
            self._items = []

    def _key(self, table_name: str, kind: str, item: dict[str, Any]) -> dict[str, Any]:
        return _key_of(self._backend, kind, {"TableName": table_name, "Key": item, "Item": item})

    def _image(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        try:
            found = self._backend.get_item(table, key)
        except Exception:
            return None
        return None if found is None else dict(found.to_json()["Attributes"])

    def after(self, accepted: bool) -> dict[str, int]:
        units: dict[str, int] = {}
        transactional = self._op == "TransactWriteItems"
        for (table, key), before in zip(self._items, self._before, strict=True):
            after = self._image(table, key) if accepted else before
            item_units = write_units(
                before,
                after,
                self._indexes(table),
                applied=accepted,
                transactional=transactional,
            )
            for name, n in item_units.items():
                label = table if name == "table" else f"{table}/{name}"
                units[label] = units.get(label, 0) + n
        return units

    def _indexes(self, table_name: str) -> list[IndexSpec]:
        table = self._backend.get_table(table_name)
        keys = tuple(k for k in (table.hash_key_attr, table.range_key_attr) if k)
        return [
            IndexSpec(
                name=index.name,
                keys=tuple(index.schema_key_attrs),
                projection=(index.projection or {}).get("ProjectionType", "ALL"),
                table_keys=keys,
                included=tuple((index.projection or {}).get("NonKeyAttributes", [])),
            )
            for index in table.global_indexes
        ]


def _backend(region: str) -> Any:
    from moto.core.models import DEFAULT_ACCOUNT_ID  # noqa: PLC0415
    from moto.dynamodb.models import dynamodb_backends  # noqa: PLC0415

    return dynamodb_backends[DEFAULT_ACCOUNT_ID][region]


class Recorder:
    """WSGI layer in front of moto: DynamoDB writes one at a time, each answered with the
    write units it would cost (``WRITE_UNITS_HEADER``); accepted writes (and the receipts
    that name the jobs a delete removes) go to the journal when there is one."""

    def __init__(self, app: Any, journal: Journal | None) -> None:
        self._app = app
        self._journal = journal

    def _service(self, environ: dict[str, Any]) -> tuple[str, str] | None:
        prefix, _, op = str(environ.get("HTTP_X_AMZ_TARGET", "")).partition(".")
        if prefix.startswith("DynamoDB_") and op in DYNAMODB_WRITES:
            return "dynamodb", op
        if (
            prefix == "AmazonSQS"
            and self._journal
            and (op in SQS_RECORDED or op == "ReceiveMessage")
        ):
            return "sqs", op
        return None

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        service = self._service(environ)
        if service is None:
            return self._app(environ, start_response)  # type: ignore[no-any-return]
        name, op = service
        request = get_input_stream(environ).read()
        environ["wsgi.input"] = io.BytesIO(request)
        environ["CONTENT_LENGTH"] = str(len(request))
        lock = _writes if name == "dynamodb" else contextlib.nullcontext()
        with lock:
            units = (
                WriteUnits(_region(environ), _parsed(request), op)
                if name == "dynamodb" and op in DYNAMODB_ITEM_WRITES
                else None
            )
            answer_iter, status, headers = run_wsgi_app(self._app, environ, buffered=True)
            answer = b"".join(answer_iter)
            if units is not None:
                billed = units.after(accepted=status.startswith("200"))
                headers = Headers(headers)
                headers[WRITE_UNITS_HEADER] = json.dumps(billed, separators=(",", ":"))
            if self._journal is not None and status.startswith("200"):
                self._journal.record(name, _region(environ), op, _parsed(request), _parsed(answer))
                if name == "dynamodb":
                    self._journal.snapshot_if_due()
        start_response(status, list(headers.items()))
        return [answer]


def in_process(app: Any, host: str) -> Call:
    """Requests to ``app`` without a socket: the replay at start, before it listens."""

    def call(service: str, region: str, op: str, body: dict[str, Any]) -> tuple[int, Any]:
        target = f"DynamoDB_20120810.{op}" if service == "dynamodb" else f"AmazonSQS.{op}"
        environ = EnvironBuilder(
            method="POST",
            path="/",
            base_url=f"http://{host}",
            headers=[
                ("X-Amz-Target", target),
                (
                    "Authorization",
                    f"AWS4-HMAC-SHA256 Credential=local/20260101/{region}/{service}"
                    "/aws4_request, SignedHeaders=host;x-amz-target, Signature=0",
                ),
            ],
            content_type="application/x-amz-json-1.0",
            data=json.dumps(body),
        ).get_environ()
        answer_iter, status, _ = run_wsgi_app(app, environ, buffered=True)
        return int(status.split()[0]), _parsed(b"".join(answer_iter))

    return call


class MotoItems:
    """Items straight from and into moto's tables (``local/journal.py``'s snapshots):
    the same item methods the transaction undo log above uses."""

    def _table(self, region: str, table: str) -> Any:
        from moto.core.models import DEFAULT_ACCOUNT_ID  # noqa: PLC0415
        from moto.dynamodb.models import dynamodb_backends  # noqa: PLC0415

        return dynamodb_backends[DEFAULT_ACCOUNT_ID][region].get_table(table)

    def exists(self, region: str, table: str) -> bool:
        from moto.core.models import DEFAULT_ACCOUNT_ID  # noqa: PLC0415
        from moto.dynamodb.models import dynamodb_backends  # noqa: PLC0415

        return table in dynamodb_backends[DEFAULT_ACCOUNT_ID][region].tables

    def dump(self, region: str, table: str) -> list[dict[str, Any]]:
        return [item.to_json()["Attributes"] for item in self._table(region, table).all_items()]

    def load(self, region: str, table: str, items: Iterable[dict[str, Any]]) -> None:
        stored = self._table(region, table)
        for item in items:
            stored.put_item(item)


def recount_messages(items: MotoItems, region: str, messages: str, counters: str) -> int:
    """After a restore, each task's counts set from its messages; returns the tasks.

    The counts follow the messages table's stream a moment behind, and a restore starts
    the stream over (``new_stream_shards``): what a killed stack had written but not yet
    counted would be lost for good. So the restored messages are counted again, once,
    here: each task's first counter item holds its counts, the others zero, and no
    stream marks (the new shard starts unread). Local only: a walk of the whole table.
    """
    from chalicelib.storage.messages import COUNTER_SHARDS, STATUSES, counter_name  # noqa: PLC0415

    if not items.exists(region, messages) or not items.exists(region, counters):
        return 0
    stored = items.dump(region, messages)
    # The timeline's day lists stay (its hour items were restored as they were).
    days = {
        item["name"]["S"]: item["timeline_days"]
        for item in items.dump(region, counters)
        if "timeline_days" in item
    }
    by_task: dict[int, Counter[str]] = {}
    for item in stored:
        task_id = int(item["task_id"]["N"])
        by_task.setdefault(task_id, Counter())[item["status"]["S"]] += 1
    rows = []
    for task_id, statuses in by_task.items():
        for shard in range(COUNTER_SHARDS):
            counts = statuses if shard == 0 else Counter()
            row: dict[str, Any] = {"name": {"S": counter_name(task_id, shard)}}
            row["total"] = {"N": str(sum(counts.values()))}
            row.update({status: {"N": str(counts[status])} for status in STATUSES})
            if row["name"]["S"] in days:
                row["timeline_days"] = days[row["name"]["S"]]
            rows.append(row)
    items.load(region, counters, rows)
    return len(by_task)


def new_stream_shards() -> None:
    """After a restore, each table's stream starts a new shard, empty, under a new id.

    Restoring wrote every item again (the snapshot) and replayed the journal, and moto
    put all of it on the stream (under its one fixed shard id and numbering); the counts
    those writes made were restored with the counters. Counting them again would count
    twice, and the marks of the old shard would skip the new records, so the stream
    goes on from a shard nothing has read.
    """
    from moto.core.models import DEFAULT_ACCOUNT_ID  # noqa: PLC0415
    from moto.dynamodb.models import dynamodb_backends  # noqa: PLC0415
    from moto.dynamodb.models.table import StreamShard  # noqa: PLC0415

    started = time.time_ns() // 1000
    for region in {"us-east-1", os.environ.get("AWS_REGION"), os.environ.get("AWS_DEFAULT_REGION")}:
        if not region:
            continue
        for table in dynamodb_backends[DEFAULT_ACCOUNT_ID][region].tables.values():
            if table.stream_shard is None:
                continue
            shard = StreamShard(DEFAULT_ACCOUNT_ID, table)
            shard.id = f"shardId-{started:020d}-local"
            shard.starting_sequence_number = started * 10**6
            table.stream_shard = shard


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.emulator", description=__doc__)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    parser.add_argument("--data", type=Path, help="keep the data in this folder across restarts")
    parser.add_argument("--fresh", action="store_true", help="discard the kept data first")
    parser.add_argument(
        "--snapshot-every",
        type=int,
        default=SNAPSHOT_EVERY,
        help="journal records between snapshots",
    )
    args = parser.parse_args(argv)
    install()
    from moto.moto_server import werkzeug_app  # noqa: PLC0415
    from moto.moto_server.werkzeug_app import (  # noqa: PLC0415
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )

    # Moto's server would otherwise answer every browser's CORS preflight itself, for any
    # origin and method: off, the import bucket's own CORS rule answers, as in AWS (the
    # console's upload works locally only if that rule lets it).
    werkzeug_app.DISABLE_GLOBAL_CORS = True  # type: ignore[attr-defined]

    app = DomainDispatcherApplication(create_backend_app)
    journal = (
        Journal(args.data, MotoItems(), snapshot_every=args.snapshot_every) if args.data else None
    )
    if journal is not None:
        call = in_process(app, f"{args.host}:{args.port}")
        restored = journal.restore(call, fresh=args.fresh)
        print(
            f"[emulator] restored from {journal.folder}: {json.dumps(restored.summary())}",
            flush=True,
        )
        settings = Settings.from_env(os.environ)
        recount_messages(
            MotoItems(), settings.aws_region, settings.messages_table, settings.counters_table
        )
        new_stream_shards()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sys.exit(0))
    run_simple(
        args.host,
        args.port,
        Recorder(app, journal),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
