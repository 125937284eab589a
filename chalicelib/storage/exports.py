"""Export records (``chalicelib/domain/exports.py``): items ``export#<id>`` of the
counters table, each write conditional on the version read, so two runners of one export
(a redelivered job) can never both move its checkpoint; and the rows an export reads: a
task's messages by key, a Query of its partition at a time, never a scan."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

from pynamodb.exceptions import DoesNotExist, PutError, UpdateError
from pynamodb.expressions.update import Action

from chalicelib.domain.exports import Checkpoint, ExportRecord, ExportRow, ExportStatus, Part
from chalicelib.ports import StaleExport
from chalicelib.storage.ids import next_id
from chalicelib.storage.models import ClientModel, ExportModel, MessageModel, TaskModel

PREFIX = "export#"
CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailedException"
# BatchGetItem's most keys a call.
BATCH_KEYS = 100


def _name(export_id: int) -> str:
    return f"{PREFIX}{export_id}"


def checkpoint_json(checkpoint: Checkpoint) -> str:
    return json.dumps(asdict(checkpoint), separators=(",", ":"))


def checkpoint_of(text: str | None) -> Checkpoint:
    if not text:
        return Checkpoint()
    data: dict[str, Any] = json.loads(text)
    return Checkpoint(**{**data, "parts": tuple(Part(**part) for part in data["parts"])})


def record_of(item: ExportModel) -> ExportRecord:
    return ExportRecord(
        id=int(item.name.removeprefix(PREFIX)),
        task_id=int(item.task_id),
        status=ExportStatus(item.status),
        key=item.key,
        created_at_ms=int(item.created_ms),
        updated_at_ms=int(item.updated_ms),
        expires_at=item.expires_at,
        checkpoint=checkpoint_of(item.checkpoint),
        reason=item.reason,
        version=int(item.version),
    )


def _conditional(error: Exception) -> bool:
    cause: Any = getattr(error, "cause_response_code", None)
    return bool(cause == CONDITIONAL_CHECK_FAILED)


class DynamoExports:
    """``ExportRepository`` (``chalicelib/ports.py``)."""

    def new_id(self) -> int:
        return next_id("exports")

    def task_exists(self, task_id: int) -> bool:
        """A task that exists and was not deleted."""
        try:
            task = TaskModel.get(task_id, consistent_read=True, attributes_to_get=["deleted"])
        except DoesNotExist:
            return False
        return not task.deleted

    def add(self, record: ExportRecord) -> None:
        item = ExportModel(
            _name(record.id),
            task_id=record.task_id,
            status=record.status.value,
            key=record.key,
            created_ms=record.created_at_ms,
            updated_ms=record.updated_at_ms,
            checkpoint=checkpoint_json(record.checkpoint),
            version=record.version,
            expires_at=record.expires_at,
        )
        item.save(condition=ExportModel.name.does_not_exist())

    def get(self, export_id: int) -> ExportRecord | None:
        try:
            return record_of(ExportModel.get(_name(export_id), consistent_read=True))
        except ExportModel.DoesNotExist:
            return None

    def save(self, record: ExportRecord, now_ms: int) -> ExportRecord:
        """Store ``record`` (status, checkpoint) if the stored one is still at
        ``record.version``; StaleExport if another write came first."""
        saved = replace(record, version=record.version + 1, updated_at_ms=now_ms)
        actions: list[Action] = [
            ExportModel.status.set(saved.status.value),
            ExportModel.checkpoint.set(checkpoint_json(saved.checkpoint)),
            ExportModel.updated_ms.set(now_ms),
            ExportModel.version.set(saved.version),
        ]
        if saved.reason is not None:
            actions.append(ExportModel.reason.set(saved.reason))
        try:
            ExportModel(_name(record.id)).update(
                actions=actions, condition=ExportModel.version == record.version
            )
        except (UpdateError, PutError) as error:
            if _conditional(error):
                raise StaleExport from None
            raise
        return saved

    def rows(
        self, task_id: int, after_client_id: int | None, limit: int
    ) -> tuple[list[ExportRow], bool]:
        """Up to ``limit`` messages of the task after ``after_client_id``, in key order,
        and whether more may follow: one Query of its partition (and a BatchGetItem of
        the clients of any message stored without its phone)."""
        start = None
        if after_client_id is not None:
            start = {"task_id": {"N": str(task_id)}, "client_id": {"N": str(after_client_id)}}
        results = MessageModel.query(task_id, last_evaluated_key=start, page_size=limit)
        page: dict[str, Any] = next(results.page_iter, {})
        items = [MessageModel.from_raw_data(raw) for raw in page.get("Items", [])]
        missing = sorted({int(item.client_id) for item in items if not item.phone})
        phones = _phones(missing) if missing else {}
        rows = [
            ExportRow(
                id=int(item.id),
                client_id=int(item.client_id),
                phone=item.phone or phones.get(int(item.client_id), ""),
                status=item.status,
                created_at=item.created_at,
                sent_at=item.sent_at,
                attempts=int(item.attempts or 0),
                last_error=item.last_error,
            )
            for item in items
        ]
        return rows, bool(page.get("LastEvaluatedKey"))


def _phones(client_ids: Sequence[int]) -> dict[int, str]:
    """The clients' phones now (a message written before messages kept their phone);
    a client deleted since has none."""
    found: dict[int, str] = {}
    for start in range(0, len(client_ids), BATCH_KEYS):
        batch = client_ids[start : start + BATCH_KEYS]
        clients = ClientModel.batch_get(batch, attributes_to_get=["id", "phone"])
        found.update({int(client.id): client.phone for client in clients})
    return found
