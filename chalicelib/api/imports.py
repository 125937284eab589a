"""Bulk import of clients (SPEC, "Bulk import and export"): its routes, their OpenAPI
description, and the mapping from domain values to answers. The file itself goes to the
bucket through the pre-signed URL, never through the API (its body stays at 64 KiB)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalice.app import Blueprint, Response

from chalicelib import http
from chalicelib.api.auth import PROTECTED
from chalicelib.api.operation import Operation
from chalicelib.bootstrap import services
from chalicelib.domain.tasks import format_instant
from chalicelib.schemas import ImportCreate, ImportErrorOut, ImportOut, NewImportOut, parse

# For the type checker only (see chalicelib/api/clients.py).
if TYPE_CHECKING:
    from chalicelib.services.imports import ImportView, NewImport

bp = Blueprint(__name__)

UPLOAD_URL = (
    "http://127.0.0.1:4800/notify-local-imports/imports/1.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=...&X-Amz-Date=20261128T120000Z&X-Amz-Expires=3600"
    "&X-Amz-SignedHeaders=host&X-Amz-Signature=..."
)
DONE = {
    "id": 1,
    "status": "done",
    "rows": 3,
    "created": 1,
    "updated": 1,
    "rejected": 1,
    "errors": [{"line": 3, "field": "phone", "message": "must be 7 followed by ten digits"}],
    "error_report_url": "http://127.0.0.1:4800/notify-local-imports/reports/1-errors.csv?...",
}


@bp.route("/api/imports", methods=["POST"], **PROTECTED)
@Operation(
    "Start a bulk import of clients",
    "imports",
    "Answers a pre-signed URL to PUT the CSV file to (UTF-8, a header naming the columns "
    "`phone,code,tag,utc` in any order). Once the file is there the import runs by itself: "
    "each row is validated as `POST /api/clients/` validates a body; a row whose phone "
    "is a client's updates that client, any other creates one; a rejected row changes "
    "nothing. A phone on two rows of one file: the first applies, the later is rejected. "
    "Read its progress with `GET /api/imports/{import_id}`.",
    body=ImportCreate,
    body_examples={"csv": {"format": "csv"}},
    status=201,
    answer=NewImportOut,
    answer_example={
        "id": 1,
        "status": "waiting_upload",
        "upload_url": UPLOAD_URL,
        "expires_at": "2026-11-28T13:00:00Z",
    },
)
@http.endpoint
def create_import() -> Response:
    parse(ImportCreate, http.json_body(bp.current_request))
    return http.ok(new_import_out(services().imports.create()), status=201)


@bp.route("/api/imports/{import_id}", methods=["GET"], **PROTECTED)
@Operation(
    "Read an import's progress",
    "imports",
    "Counts and the first 100 errors while it runs; once `done` with rejected rows, "
    "`error_report_url` gives every error as CSV.",
    answer=ImportOut,
    answer_example=DONE,
)
@http.endpoint
def get_import(import_id: str) -> Response:
    view = services().imports.get(http.path_id(import_id, "Import"))
    return http.ok(import_out(view))


def new_import_out(new: NewImport) -> NewImportOut:
    return NewImportOut(
        id=new.record.id,
        status=new.record.status.value,
        upload_url=new.upload_url,
        expires_at=format_instant(new.expires_at),
    )


def import_out(view: ImportView) -> ImportOut:
    record, progress = view.record, view.record.progress
    return ImportOut(
        id=record.id,
        status=record.status.value,
        rows=progress.rows,
        created=progress.created,
        updated=progress.updated,
        rejected=progress.rejected,
        errors=[
            ImportErrorOut(line=e.line, field=e.field, message=e.message) for e in progress.errors
        ],
        error_report_url=view.error_report_url,
    )
