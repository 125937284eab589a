"""Exports of a task's messages as CSV (SPEC, "Bulk import and export"): the rules.

An export's life (``docs/imports.md``, "Exports", draws it)::

    POST /api/exports/ --> running --(last message written)--> done
                              └--(the task deleted meanwhile)--> failed

The worker reads the task's messages by key (its partition, never a scan), a page at a
time, and writes them as CSV rows. A small export is one PUT; a larger one is an S3
multipart upload whose parts are at least ``PART_BYTES``: after each part a checkpoint
(:class:`Checkpoint`: the last message written, the upload's id, the parts' ETags, the
rows) is stored conditionally on the previous one, so a job redelivered or run twice
carries on from the same place, and a part uploaded again under its number is the same
bytes (the same messages, formatted the same way) as the first time.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from chalicelib.domain.tasks import format_instant

COLUMNS = ("id", "client_id", "phone", "status", "created_at", "sent_at", "attempts", "last_error")
# S3's smallest part of a multipart upload (every part but the last).
PART_BYTES = 5 * 1024 * 1024
# Messages one Query reads (the page of the task's partition).
PAGE_ROWS = 1000
# An upload found lost this often (its parts overwritten with other bytes by a second
# runner while the task's messages still changed, or aborted) fails the export.
MAX_RESTARTS = 3
# Export files (``exports/``) expire after this in the bucket's lifecycle
# (infra/template.yaml), and the export records after the same (DynamoDB TTL): a record
# whose file is gone has nothing left to hand out.
KEEP_DAYS = 7
# A cell starting with one of these is a formula to a spreadsheet: it gets a leading "'"
# (docs/imports.md, "Exports"). Tab and carriage return are OWASP's additions to = + - @.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ExportStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


FINAL = frozenset({ExportStatus.DONE, ExportStatus.FAILED})


@dataclass(frozen=True)
class ExportRow:
    """One message of the task, with the phone it went to."""

    id: int
    client_id: int
    phone: str
    status: str
    created_at: datetime
    sent_at: datetime | None
    attempts: int
    last_error: str | None


@dataclass(frozen=True)
class Part:
    number: int
    etag: str


@dataclass(frozen=True)
class Checkpoint:
    """Everything needed to carry on at a part boundary."""

    after_client_id: int | None = None  # the last message in the parts uploaded
    upload_id: str | None = None
    parts: tuple[Part, ...] = ()
    rows: int = 0  # rows in the parts uploaded (the header is no row)
    restarts: int = 0  # times the upload was found lost and begun again


@dataclass(frozen=True)
class ExportRecord:
    id: int
    task_id: int
    status: ExportStatus
    key: str
    created_at_ms: int
    updated_at_ms: int
    expires_at: datetime  # the record's TTL
    checkpoint: Checkpoint = Checkpoint()
    reason: str | None = None  # why it failed
    version: int = 0


# The export's job on the import queue (``chalicelib/queue.py``: ExportJob); the import
# function tells it from S3's events and the imports' own jobs by its "export" field.
JOB_VERSION = 1


def export_job_body(export_id: int) -> str:
    return json.dumps({"v": JOB_VERSION, "export": export_id}, separators=(",", ":"))


def export_id_of(body: str) -> int | None:
    """The export an import queue message is the job of; None for any other message."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict) and data.get("v") == JOB_VERSION and type(data.get("export")) is int:
        return int(data["export"])
    return None


def export_key(export_id: int) -> str:
    return f"exports/{export_id}.csv"


def safe_cell(value: str) -> str:
    """A cell a spreadsheet shows as text, never evaluates."""
    return f"'{value}" if value.startswith(FORMULA_STARTS) else value


def _line(cells: Iterable[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([safe_cell(cell) for cell in cells])
    return buffer.getvalue()


HEADER = _line(COLUMNS).encode()


def csv_line(row: ExportRow) -> bytes:
    """The row's CSV line (RFC 4180: quoted where needed, CRLF), UTF-8."""
    return _line(
        [
            str(row.id),
            str(row.client_id),
            row.phone,
            row.status,
            format_instant(row.created_at),
            format_instant(row.sent_at) if row.sent_at else "",
            str(row.attempts),
            row.last_error or "",
        ]
    ).encode()
