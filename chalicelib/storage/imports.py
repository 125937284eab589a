"""Import records (``chalicelib/domain/imports.py``): items ``import#<id>`` of the counters
table, each write conditional on the version read, so two runners of one import (a
repeated storage event, a retried job) can never both move its checkpoint."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pynamodb.exceptions import PutError, UpdateError
from pynamodb.expressions.update import Action

from chalicelib.domain.imports import KEEP_DAYS, ImportRecord, ImportStatus, Progress, RowError
from chalicelib.ports import StaleImport
from chalicelib.storage.ids import next_id
from chalicelib.storage.models import ImportModel

PREFIX = "import#"
CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailedException"


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

    def save(self, record: ImportRecord, now_ms: int) -> ImportRecord:
        """Store ``record`` (status, etag, report, checkpoint) if the stored one is still
        at ``record.version``; StaleImport if another write came first."""
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
        try:
            item.update(actions=actions, condition=ImportModel.version == record.version)
        except (UpdateError, PutError) as error:
            if _conditional(error):
                raise StaleImport from None
            raise
        return saved
