"""Import records (``chalicelib/domain/imports.py``): items ``import#<id>`` of the counters
table, each write conditional on the version read, so two runners of one import (a
repeated storage event, a retried job) can never both move its checkpoint."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pynamodb.exceptions import PutError, TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from chalicelib.domain.audience import CountKey
from chalicelib.domain.imports import (
    CHECKPOINT_COUNTERS,
    KEEP_DAYS,
    ImportRecord,
    ImportStatus,
    Progress,
    RowError,
)
from chalicelib.ports import StaleImport
from chalicelib.storage.clients import counter_name, transact
from chalicelib.storage.ids import next_id
from chalicelib.storage.models import CounterModel, ImportModel

PREFIX = "import#"
CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailedException"
CONDITIONAL_FAILED = "ConditionalCheckFailed"  # a transaction's cancellation reason


def _name(import_id: int) -> str:
    return f"{PREFIX}{import_id}"


def progress_json(progress: Progress) -> str:
    return json.dumps(asdict(progress), separators=(",", ":"), ensure_ascii=False)


def progress_of(text: str | None) -> Progress:
    if not text:
        return Progress()
    data: dict[str, Any] = json.loads(text)
    return Progress(
        **{
            **data,
            "errors": tuple(RowError(**error) for error in data.get("errors", [])),
            "columns": tuple(data.get("columns", [])),
            "report_parts": tuple(data.get("report_parts", [])),
        }
    )


def record_of(item: ImportModel) -> ImportRecord:
    return ImportRecord(
        id=int(item.name.removeprefix(PREFIX)),
        status=ImportStatus(item.status),
        key=item.key,
        created_at_ms=int(item.created_ms),
        updated_at_ms=int(item.updated_ms),
        progress=progress_of(item.progress),
        etag=item.etag,
        report_key=item.report_key,
        version=int(item.version),
    )


def _expires(now_ms: int) -> datetime:
    """The record's TTL: KEEP_DAYS after its last change, as its file and report."""
    return datetime.fromtimestamp(now_ms / 1000, UTC) + timedelta(days=KEEP_DAYS)


def _conditional(error: Exception) -> bool:
    cause: Any = getattr(error, "cause_response_code", None)
    return bool(cause == CONDITIONAL_CHECK_FAILED)


class DynamoImports:
    """``ImportRepository`` (``chalicelib/ports.py``)."""

    def new_id(self) -> int:
        return next_id("imports")

    def add(self, record: ImportRecord) -> None:
        item = ImportModel(
            _name(record.id),
            status=record.status.value,
            key=record.key,
            created_ms=record.created_at_ms,
            updated_ms=record.updated_at_ms,
            progress=progress_json(record.progress),
            version=record.version,
            expires_at=_expires(record.updated_at_ms),
        )
        item.save(condition=ImportModel.name.does_not_exist())

    def get(self, import_id: int) -> ImportRecord | None:
        try:
            return record_of(ImportModel.get(_name(import_id), consistent_read=True))
        except ImportModel.DoesNotExist:
            return None

    def save(
        self, record: ImportRecord, now_ms: int, counts: Mapping[CountKey, int] | None = None
    ) -> ImportRecord:
        """Store ``record`` (status, etag, report, checkpoint) if the stored one is still
        at ``record.version``; StaleImport if another write came first. ``counts``: the
        chunk's audience counter deltas, added in the same transaction: a chunk's rows are
        counted exactly when its checkpoint is stored, once, whoever applied them."""
        saved = replace(record, version=record.version + 1, updated_at_ms=now_ms)
        item = ImportModel(_name(record.id))
        actions: list[Action] = [
            ImportModel.status.set(saved.status.value),
            ImportModel.progress.set(progress_json(saved.progress)),
            ImportModel.updated_ms.set(now_ms),
            ImportModel.version.set(saved.version),
            ImportModel.expires_at.set(_expires(now_ms)),
        ]
        if saved.etag is not None:
            actions.append(ImportModel.etag.set(saved.etag))
        if saved.report_key is not None:
            actions.append(ImportModel.report_key.set(saved.report_key))
        condition = ImportModel.version == record.version
        moved = {key: delta for key, delta in (counts or {}).items() if delta}
        if moved:
            _save_counted(item, actions, condition, moved)
            return saved
        try:
            item.update(actions=actions, condition=condition)
        except (UpdateError, PutError) as error:
            if _conditional(error):
                raise StaleImport from None
            raise
        return saved


def _save_counted(
    item: ImportModel, actions: list[Action], condition: Condition, counts: dict[CountKey, int]
) -> None:
    if len(counts) > CHECKPOINT_COUNTERS:  # pragma: no cover - the service cuts chunks
        raise ValueError(f"{len(counts)} counters do not fit in one checkpoint")

    def write(tx: TransactWrite) -> None:
        tx.update(item, actions=actions, condition=condition)
        for key in sorted(counts, key=counter_name):
            tx.update(
                CounterModel(counter_name(key)), actions=[CounterModel.value.add(counts[key])]
            )

    try:
        transact(write)
    except TransactWriteError as error:
        reasons = error.cancellation_reasons
        if reasons and reasons[0] is not None and reasons[0].code == CONDITIONAL_FAILED:
            raise StaleImport from None
        raise
