"""Exports of a task's messages as CSV (SPEC, "Bulk import and export"; the rules and the
checkpoint in ``chalicelib/domain/exports.py``, the life of an export in
``docs/imports.md``, "Exports").

``create`` answers ``POST /api/exports/`` and queues the export's job on the import
queue (a job kind of the import function, ``app.import_files``); ``run`` reads the task's
messages by key a page at a time and writes them to the bucket: one PUT when they fit in
one part, else a multipart upload, a checkpoint after each part, until its time is nearly
out: then it queues the export's next job, which carries on from the checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Protocol

from chalicelib import logs
from chalicelib.clock import Clock
from chalicelib.domain.exports import (
    FINAL,
    HEADER,
    KEEP_DAYS,
    MAX_RESTARTS,
    PAGE_ROWS,
    PART_BYTES,
    Checkpoint,
    ExportRecord,
    ExportStatus,
    Part,
    csv_line,
    export_key,
)
from chalicelib.domain.lifecycle import ms
from chalicelib.errors import NotFound
from chalicelib.ports import ExportFiles, ExportRepository, PartsLost, StaleExport
from chalicelib.queue import ExportJob

log = logs.get_logger("exports")


class ExportJobs(Protocol):
    def send(self, job: ExportJob) -> None: ...


@dataclass(frozen=True)
class ExportView:
    record: ExportRecord
    download_url: str | None


class ExportService:
    def __init__(
        self,
        clock: Clock,
        *,
        exports: ExportRepository,
        files: ExportFiles,
        jobs: ExportJobs,
        url_seconds: int,
        part_bytes: int = PART_BYTES,
        page_rows: int = PAGE_ROWS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._exports = exports
        self._files = files
        self._jobs = jobs
        self._url_seconds = url_seconds
        self._part_bytes = part_bytes
        self._page_rows = page_rows
        self._monotonic = monotonic

    def _now_ms(self) -> int:
        return ms(self._clock())

    # --- the API ----------------------------------------------------------------------

    def create(self, task_id: int) -> ExportRecord:
        """A new export of the task's messages, its job queued; NotFound for a task that
        does not exist or was deleted (then nothing is written)."""
        if not self._exports.task_exists(task_id):
            raise NotFound(f"Task {task_id} does not exist.")
        export_id = self._exports.new_id()
        now = self._clock()
        record = ExportRecord(
            id=export_id,
            task_id=task_id,
            status=ExportStatus.RUNNING,
            key=export_key(export_id),
            created_at_ms=ms(now),
            updated_at_ms=ms(now),
            expires_at=now + timedelta(days=KEEP_DAYS),
        )
        self._exports.add(record)
        self._jobs.send(ExportJob(export_id))
        log.info("export created", extra={"export_id": export_id, "task_id": task_id})
        return record

    def get(self, export_id: int) -> ExportView:
        record = self._exports.get(export_id)
        if record is None:
            raise NotFound(f"Export {export_id} does not exist.")
        url = None
        if record.status is ExportStatus.DONE:
            url = self._files.download_url(record.key, self._url_seconds)
        return ExportView(record, url)

    # --- the import function's export jobs --------------------------------------------

    def run(self, export_id: int, budget_seconds: float) -> ExportRecord | None:
        """Carry the export on from its checkpoint for about ``budget_seconds`` (at least
        one part), then queue its next job unless it is over. A runner that finds the
        checkpoint moved by another stops: that one carries on."""
        started = self._monotonic()
        record = self._exports.get(export_id)
        if record is None:
            log.warning("export job for an unknown export", extra={"export_id": export_id})
            return None
        if record.status in FINAL:
            log.info("export already over; job ignored", extra=_figures(record))
            return None
        try:
            return self._carry_on(record, started, budget_seconds)
        except StaleExport:
            log.info("export moved on by another runner; this one stops", extra=_figures(record))
            return None
        except PartsLost:
            return self._restart(record)

    def _carry_on(self, record: ExportRecord, started: float, budget: float) -> ExportRecord:
        checkpoint = record.checkpoint
        fresh = checkpoint.after_client_id is None and not checkpoint.parts
        buffer = bytearray(HEADER if fresh else b"")
        rows, last = 0, checkpoint.after_client_id
        while True:
            page, more = self._exports.rows(record.task_id, last, self._page_rows)
            for row in page:
                buffer += csv_line(row)
            rows += len(page)
            if page:
                last = page[-1].client_id
            if not (more and page):
                return self._finish(record, bytes(buffer), rows, last)
            if len(buffer) >= self._part_bytes:
                record = self._part(record, bytes(buffer), rows, last)
                buffer.clear()
                rows = 0
                if self._monotonic() - started >= budget:
                    self._jobs.send(ExportJob(record.id))
                    log.info("export continues in a new invocation", extra=_figures(record))
                    return record

    def _part(self, record: ExportRecord, body: bytes, rows: int, last: int | None) -> ExportRecord:
        """Upload the part after the checkpoint's, then move the checkpoint past it."""
        checkpoint = record.checkpoint
        upload_id = checkpoint.upload_id
        new_upload = upload_id is None
        if upload_id is None:
            upload_id = self._files.start_upload(record.key)
        number = len(checkpoint.parts) + 1
        etag = self._files.upload_part(record.key, upload_id, number, body)
        moved = replace(
            checkpoint,
            after_client_id=last,
            upload_id=upload_id,
            parts=(*checkpoint.parts, Part(number, etag)),
            rows=checkpoint.rows + rows,
        )
        try:
            saved = self._exports.save(replace(record, checkpoint=moved), self._now_ms())
        except StaleExport:
            if new_upload:  # nobody else knows this upload: its parts go now
                self._files.abort_upload(record.key, upload_id)
            raise
        log.info("export part written", extra=_figures(saved))
        return saved

    def _finish(
        self, record: ExportRecord, body: bytes, rows: int, last: int | None
    ) -> ExportRecord:
        checkpoint = record.checkpoint
        if checkpoint.upload_id is None:
            self._files.put(record.key, body)  # it fits in one part
            parts = checkpoint.parts
        else:
            parts = checkpoint.parts
            if body:
                number = len(parts) + 1
                etag = self._files.upload_part(record.key, checkpoint.upload_id, number, body)
                parts = (*parts, Part(number, etag))
            # A job delivered again after its upload was completed finds the upload gone
            # (PartsLost): the export begins again, the same rows in the same object.
            self._files.complete_upload(record.key, checkpoint.upload_id, parts)
        final = replace(checkpoint, after_client_id=last, parts=parts, rows=checkpoint.rows + rows)
        done = self._exports.save(
            replace(record, status=ExportStatus.DONE, checkpoint=final), self._now_ms()
        )
        log.info("export done", extra=_figures(done))
        return done

    def _restart(self, record: ExportRecord) -> ExportRecord | None:
        """The upload is not the checkpoint's any more: begin it again, from the first
        message, or fail the export when that happened too often."""
        fresh = self._exports.get(record.id)
        if fresh is None or fresh.status in FINAL:
            return None
        upload_id = fresh.checkpoint.upload_id
        if upload_id is not None:
            self._files.abort_upload(fresh.key, upload_id)
        restarts = fresh.checkpoint.restarts + 1
        try:
            if restarts > MAX_RESTARTS:
                failed = self._exports.save(
                    replace(
                        fresh,
                        status=ExportStatus.FAILED,
                        reason="the upload was lost too often; start a new export",
                    ),
                    self._now_ms(),
                )
                log.warning("export failed", extra=_figures(failed))
                return failed
            again = self._exports.save(
                replace(fresh, checkpoint=Checkpoint(restarts=restarts)), self._now_ms()
            )
        except StaleExport:
            return None
        self._jobs.send(ExportJob(record.id))
        log.warning("export upload lost; begun again", extra=_figures(again))
        return again


def _figures(record: ExportRecord) -> dict[str, Any]:
    checkpoint = record.checkpoint
    return {
        "export_id": record.id,
        "task_id": record.task_id,
        "status": record.status.value,
        "rows": checkpoint.rows,
        "parts": len(checkpoint.parts),
        "restarts": checkpoint.restarts,
    }
