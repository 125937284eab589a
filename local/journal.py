"""The local emulator's data across restarts: a snapshot and a journal of accepted writes.

Moto keeps everything in memory. In front of it (``local/emulator.py``), every DynamoDB
write and SQS change it *accepted* (HTTP 200) is appended to a journal before the answer
leaves, one JSON line each, through the operating system's file cache: a killed emulator
(``kill -9`` included) has written every write it confirmed. Reads are not kept.

``snapshot.jsonl`` holds the whole state at one point (its first line names the journal
file and the byte offset where the writes after that point begin):

- DynamoDB: each table's definition as it was requested (``CreateTable``, then any
  ``UpdateTable`` or ``UpdateTimeToLive``) and its items;
- SQS: each queue as it was requested, and each job sent and not deleted, with the time it
  was due.

At start the emulator loads the snapshot, replays the journal's writes after it (in the
order they were applied: the emulator applies DynamoDB writes one at a time, so
conditional updates and counters end where they did), sends the jobs again, then writes
a new snapshot and starts an empty journal. While it runs, a new snapshot is written every
``SNAPSHOT_EVERY`` records, so a restart replays at most that many writes. A job a
receiver held when the emulator stopped comes back at once, as after a visibility timeout:
the sending engine takes such copies for what they are (``docs/message-lifecycle.md``). A
job moto moved to the dead-letter queue on its own comes back to the send queue.

Only the JSON protocol (``X-Amz-Target``), which boto3 uses for both, is recorded.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

DYNAMODB_TABLE_CHANGES = frozenset(
    {"CreateTable", "UpdateTable", "DeleteTable", "UpdateTimeToLive"}
)
DYNAMODB_ITEM_WRITES = frozenset(
    {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
)
DYNAMODB_WRITES = DYNAMODB_TABLE_CHANGES | DYNAMODB_ITEM_WRITES
SQS_QUEUE_CHANGES = frozenset({"CreateQueue", "SetQueueAttributes", "DeleteQueue", "PurgeQueue"})
SQS_SENDS = frozenset({"SendMessage", "SendMessageBatch"})
SQS_DELETES = frozenset({"DeleteMessage", "DeleteMessageBatch"})
SQS_RECORDED = SQS_QUEUE_CHANGES | SQS_SENDS | SQS_DELETES | {"ReceiveMessage"}
SQS_MAX_DELAY_SECONDS = 900
SQS_BATCH = 10  # SQS's limit per SendMessageBatch
NOT_KEPT = frozenset({"Id", "DelaySeconds", "QueueUrl"})  # of a job's send request
ITEMS_PER_LINE = 500
HTTP_OK = 200
# Item writes between snapshots: a restart replays at most about this many (moto applies
# a few hundred a second); loading a snapshot takes about a tenth of that time per item.
SNAPSHOT_EVERY = 5_000
# Receipt handles remembered to name the job a delete removes: one per receive of a job
# still held; those never deleted (the job came back) are forgotten past this many.
RECEIPTS_KEPT = 100_000

# (service, region, operation, request body) -> (HTTP status, answer body): a request
# made to the emulator in-process.
Call = Callable[[str, str, str, dict[str, Any]], tuple[int, Any]]


class Items(Protocol):
    """The emulator's tables read and written directly, for snapshots: moto's ``Scan``
    answer takes milliseconds an item to build, a snapshot needs microseconds."""

    def dump(self, region: str, table: str) -> list[dict[str, Any]]: ...

    def load(self, region: str, table: str, items: Iterable[dict[str, Any]]) -> None: ...


def queue_name(request: dict[str, Any]) -> str:
    """The queue a request names (``QueueName``, or the last part of ``QueueUrl``)."""
    return str(request.get("QueueName") or str(request.get("QueueUrl", "")).rsplit("/", 1)[-1])


def delay_left(due: float, now: float) -> int:
    return min(max(math.ceil(due - now), 0), SQS_MAX_DELAY_SECONDS)


@dataclass
class Restored:
    """What a start found: the figures the banner of ``make run`` shows."""

    records: int = 0  # journal writes replayed after the snapshot
    items: int = 0
    jobs: int = 0
    failed: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "items": self.items,
            "jobs": self.jobs,
            "failed": self.failed,
            "seconds": round(self.seconds, 2),
        }


class Journal:
    """The folder's snapshot and journal, held by one emulator at a time (a lock file)."""

    def __init__(self, folder: Path, items: Items, *, snapshot_every: int = SNAPSHOT_EVERY) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._snapshot_every = snapshot_every
        self.snapshot_path = folder / "snapshot.jsonl"
        self.summary_path = folder / "restored.json"
        self._items = items
        self._lock_file = (folder / "lock").open("a")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise SystemExit(f"{folder} is in use by another emulator") from None
        self._lock = threading.Lock()  # the journal file and the state below
        self._fd: int | None = None
        self._journal: Path | None = None
        self._since_snapshot = 0
        self._tables: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._queues: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._jobs: dict[str, dict[str, Any]] = {}  # sent, not deleted: by message id
        self._deleted: set[str] = set()  # during a replay: deletes seen before their send
        self._receipts: dict[str, str] = {}

    # --- start -------------------------------------------------------------------------

    def restore(self, call: Call, *, fresh: bool = False) -> Restored:
        """Load the snapshot, replay the journal after it, queue the jobs again, and start
        a new snapshot and journal."""
        started = time.monotonic()
        if fresh:
            self.snapshot_path.unlink(missing_ok=True)
        restored = Restored()
        journal, offset = self._load_snapshot(call, restored)
        if journal is not None:
            for record in _lines(journal, offset):
                restored.records += 1
                if record["s"] == "dynamodb":
                    status, _ = call("dynamodb", record["r"], record["op"], record["b"])
                    if status != HTTP_OK:
                        restored.failed += 1
                        continue
                self._note(record)
        self._deleted.clear()
        for changes in self._queues.values():
            for record in changes:
                status, _ = call("sqs", record["r"], record["op"], record["b"])
                restored.failed += status != HTTP_OK
        self._requeue(call, restored)
        generation = f"journal-{time.time_ns()}.jsonl"
        self._journal = self.folder / generation
        self._journal.touch()
        restored.items = self._write_snapshot(generation, 0)
        self._fd = os.open(self._journal, os.O_WRONLY | os.O_APPEND)
        for old in self.folder.glob("journal-*.jsonl"):
            if old != self._journal:
                old.unlink()
        restored.seconds = time.monotonic() - started
        self.summary_path.write_text(json.dumps(restored.summary()))
        return restored

    def _load_snapshot(self, call: Call, restored: Restored) -> tuple[Path | None, int]:
        """Apply the snapshot; the journal that follows it and where its writes begin."""
        if not self.snapshot_path.exists():
            return None, 0
        lines = _lines(self.snapshot_path, 0)
        head = next(lines, None)
        if head is None:
            return None, 0
        for record in lines:
            if record["op"] == "Items":
                self._items.load(record["r"], record["t"], record["items"])
            elif record["s"] == "dynamodb":
                status, _ = call("dynamodb", record["r"], record["op"], record["b"])
                restored.failed += status != HTTP_OK
                self._note(record)
            else:
                self._note(record)
        return self.folder / head["journal"], int(head["offset"])

    def _requeue(self, call: Call, restored: Restored) -> None:
        """Send the jobs again (those due at once visible at once) under new ids."""
        now = time.time()
        jobs, self._jobs = list(self._jobs.values()), {}
        by_queue: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for job in jobs:
            by_queue.setdefault((job["r"], job["q"]), []).append(job)
        for (region, name), waiting in by_queue.items():
            status, answer = call("sqs", region, "GetQueueUrl", {"QueueName": name})
            if status != HTTP_OK:
                restored.failed += len(waiting)
                continue
            for start in range(0, len(waiting), SQS_BATCH):
                batch = waiting[start : start + SQS_BATCH]
                entries = [
                    {**job["m"], "Id": str(i), "DelaySeconds": delay_left(job["due"], now)}
                    for i, job in enumerate(batch)
                ]
                request = {"QueueUrl": answer["QueueUrl"], "Entries": entries}
                sent, accepted = call("sqs", region, "SendMessageBatch", request)
                ids = {
                    entry["Id"]: entry["MessageId"]
                    for entry in (accepted.get("Successful", []) if sent == HTTP_OK else [])
                }
                restored.failed += len(batch) - len(ids)
                restored.jobs += len(ids)
                for i, job in enumerate(batch):
                    if str(i) in ids:
                        self._jobs[ids[str(i)]] = {**job, "id": ids[str(i)]}

    # --- while it runs -----------------------------------------------------------------

    def record(self, service: str, region: str, op: str, request: Any, answer: Any) -> None:
        """Keep an accepted write (``request`` and ``answer`` are the parsed JSON bodies).
        DynamoDB writes come here one at a time, in the order they were applied."""
        if op == "ReceiveMessage":
            self._remember_receipts(answer)
            return
        if service == "dynamodb" or op in SQS_QUEUE_CHANGES:
            record = {"s": service, "r": region, "op": op, "b": request}
        elif op in SQS_SENDS:
            record = _sent(region, op, request, answer)
        else:
            with self._lock:
                ids = [self._receipts.pop(h, "") for h in _deleted_handles(op, request, answer)]
            record = {"s": "sqs", "r": region, "op": "Deleted", "ids": [i for i in ids if i]}
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._fd is None:
                return
            # One write() of a whole line on an O_APPEND descriptor: it reaches the file
            # cache before the answer is sent, so it outlives a killed emulator.
            os.write(self._fd, line)
            self._note(record)
            self._since_snapshot += _writes_in(record)

    def snapshot_if_due(self) -> None:
        """A new snapshot once enough writes have gone by. Call it between DynamoDB writes
        (holding what keeps them one at a time), so that the items read are consistent."""
        if self._since_snapshot < self._snapshot_every or self._journal is None or self._fd is None:
            return
        with self._lock:
            self._write_snapshot(self._journal.name, os.fstat(self._fd).st_size)

    def _remember_receipts(self, answer: Any) -> None:
        with self._lock:
            if len(self._receipts) > RECEIPTS_KEPT:
                for handle in list(self._receipts)[: RECEIPTS_KEPT // 2]:
                    del self._receipts[handle]
            for message in (answer or {}).get("Messages", []):
                self._receipts[message["ReceiptHandle"]] = message["MessageId"]

    # --- the state a snapshot holds ------------------------------------------------------

    def _note(self, record: dict[str, Any]) -> None:
        service, op = record["s"], record["op"]
        if service == "dynamodb":
            if op in DYNAMODB_TABLE_CHANGES:
                key = (record["r"], record["b"]["TableName"])
                if op == "CreateTable":
                    self._tables[key] = [record]
                elif op == "DeleteTable":
                    self._tables.pop(key, None)
                elif key in self._tables:
                    self._tables[key].append(record)
        elif op == "Sent":
            for job in record["jobs"]:
                if job["id"] not in self._deleted:
                    self._jobs[job["id"]] = {**job, "r": record["r"], "q": record["q"]}
        elif op == "Deleted":
            for message_id in record["ids"]:
                if self._jobs.pop(message_id, None) is None and self._fd is None:
                    self._deleted.add(message_id)  # replaying: its send may come later
        else:
            self._note_queue(record)

    def _note_queue(self, record: dict[str, Any]) -> None:
        op = record["op"]
        key = (record["r"], queue_name(record["b"]))
        if op == "DeleteQueue":
            self._queues.pop(key, None)
        elif op == "CreateQueue" or (op == "SetQueueAttributes" and key in self._queues):
            self._queues.setdefault(key, []).append(record)
        if op in {"DeleteQueue", "PurgeQueue"}:
            for message_id, job in list(self._jobs.items()):
                if (job["r"], job["q"]) == key:
                    del self._jobs[message_id]

    def _write_snapshot(self, journal: str, offset: int) -> int:
        """Write the state to the snapshot file; the number of items in it."""
        count = 0
        temporary = self.snapshot_path.with_suffix(".tmp")
        with temporary.open("w") as out:

            def put(record: dict[str, Any]) -> None:
                out.write(json.dumps(record, separators=(",", ":")) + "\n")

            put({"journal": journal, "offset": offset, "at": time.time()})
            for (region, table), changes in self._tables.items():
                for record in changes:
                    put(record)
                items = self._items.dump(region, table)
                count += len(items)
                for start in range(0, len(items), ITEMS_PER_LINE):
                    chunk = items[start : start + ITEMS_PER_LINE]
                    put({"s": "dynamodb", "op": "Items", "r": region, "t": table, "items": chunk})
            for changes in self._queues.values():
                for record in changes:
                    put(record)
            for job in self._jobs.values():
                put(
                    {
                        "s": "sqs",
                        "r": job["r"],
                        "op": "Sent",
                        "q": job["q"],
                        "jobs": [{"id": job["id"], "due": job["due"], "m": job["m"]}],
                    }
                )
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.snapshot_path)
        self._since_snapshot = 0
        return count


def _writes_in(record: dict[str, Any]) -> int:
    """Item writes a record stands for: what its replay costs."""
    body = record.get("b") or {}
    if record["op"] == "BatchWriteItem":
        return sum(len(requests) for requests in body.get("RequestItems", {}).values())
    if record["op"] == "TransactWriteItems":
        return len(body.get("TransactItems", []))
    return max(1, len(record.get("jobs", ())))


def _lines(path: Path, offset: int) -> Iterator[dict[str, Any]]:
    """The complete records from ``offset``; a line cut short by a kill (the last one, never
    answered) ends them."""
    if not path.exists():
        return
    with path.open("rb") as lines:
        lines.seek(offset)
        for line in lines:
            if not line.endswith(b"\n"):
                return
            yield json.loads(line)


def _sent(region: str, op: str, request: Any, answer: Any) -> dict[str, Any]:
    now = time.time()
    if op == "SendMessage":
        sent = [(request, answer["MessageId"])]
    else:
        ids = {entry["Id"]: entry["MessageId"] for entry in answer.get("Successful", [])}
        sent = [(entry, ids[entry["Id"]]) for entry in request["Entries"] if entry["Id"] in ids]
    jobs = [
        {
            "id": message_id,
            "due": now + int(entry.get("DelaySeconds") or 0),
            "m": {k: v for k, v in entry.items() if k not in NOT_KEPT},
        }
        for entry, message_id in sent
    ]
    return {"s": "sqs", "r": region, "op": "Sent", "q": queue_name(request), "jobs": jobs}


def _deleted_handles(op: str, request: Any, answer: Any) -> list[str]:
    if op == "DeleteMessage":
        return [request["ReceiptHandle"]]
    done = {entry["Id"] for entry in answer.get("Successful", [])}
    return [entry["ReceiptHandle"] for entry in request["Entries"] if entry["Id"] in done]
