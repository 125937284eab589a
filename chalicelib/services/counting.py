"""The message counts, kept from the messages table's stream (``chalicelib/domain/counting.py``
says why they are exact under redelivery).

Lambda hands the handler one shard's records at a time, in order, with the shard's id
(the event source mapping's tumbling window puts ``shardId`` in every event; the
window's state is not used). The records are counted per task; a task whose write
fails reports its first record as the batch's failure, so Lambda delivers the batch
again from there, and what was counted meanwhile is skipped by the marks.

A change to a final status also counts in the timeline's minute of its
``ApproximateCreationDateTime`` (``chalicelib/domain/timeline.py``), in the same write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib import logs
from chalicelib.clock import Clock, system_clock
from chalicelib.domain.counting import StatusChange
from chalicelib.ports import CountLedger

log = logs.get_logger("counting")


@dataclass
class StreamResult:
    records: int = 0
    counted_tasks: int = 0
    failed_sequence: str | None = None  # the first record to deliver again
    errors: list[str] = field(default_factory=list)

    def response(self) -> dict[str, Any]:
        """The answer Lambda expects: a tumbling window's state (unused, but required)
        and the partial batch response."""
        failures = [] if self.failed_sequence is None else [self.failed_sequence]
        return {
            "state": {},
            "batchItemFailures": [{"itemIdentifier": seq} for seq in failures],
        }


def _status(image: Mapping[str, Any] | None) -> str | None:
    if not image:
        return None
    value = image.get("status", {})
    return str(value["S"]) if isinstance(value, Mapping) and "S" in value else None


def status_change(record: Mapping[str, Any], received_at: float) -> StatusChange | None:
    """The change a stream record of the messages table makes to the counts, timed by
    its ``ApproximateCreationDateTime`` (Lambda always sets it; ``received_at``, when the
    handler got the record, only stands in for a record without one)."""
    body = record.get("dynamodb", {})
    keys = body.get("Keys", {})
    if "task_id" not in keys or "client_id" not in keys:
        return None  # not a message
    created = body.get("ApproximateCreationDateTime")
    return StatusChange(
        task_id=int(keys["task_id"]["N"]),
        sequence=int(body["SequenceNumber"]),
        before=_status(body.get("OldImage")),
        after=_status(body.get("NewImage")),
        at=float(created) if isinstance(created, int | float) else received_at,
    )


class StreamCounter:
    def __init__(self, ledger: CountLedger, clock: Clock = system_clock) -> None:
        self._ledger = ledger
        self._clock = clock

    def handle_event(self, event: Mapping[str, Any]) -> StreamResult:
        """One stream batch as Lambda delivers it (``Records`` and ``shardId``)."""
        shard_id = event.get("shardId")
        if not shard_id:
            raise ValueError("a stream event without shardId: is the tumbling window set?")
        return self.handle(str(shard_id), list(event.get("Records", [])))

    def handle(self, shard_id: str, records: Iterable[Mapping[str, Any]]) -> StreamResult:
        result = StreamResult()
        by_task: dict[int, list[tuple[str, StatusChange]]] = {}
        received_at = self._clock().timestamp()
        for record in records:
            result.records += 1
            change = status_change(record, received_at)
            if change is not None and change.counts:
                seq = str(record["dynamodb"]["SequenceNumber"])
                by_task.setdefault(change.task_id, []).append((seq, change))
        failed: list[tuple[int, str]] = []
        for task_id, changes in by_task.items():
            try:
                self._ledger.add(shard_id, task_id, [change for _, change in changes])
            except Exception:
                log.exception("could not count a stream batch", extra={"task_id": task_id})
                first = changes[0]
                failed.append((first[1].sequence, first[0]))
                result.errors.append(str(task_id))
                continue
            result.counted_tasks += 1
        if failed:
            result.failed_sequence = min(failed)[1]
        return result
