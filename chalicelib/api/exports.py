"""Exports of a task's messages as CSV (SPEC, "Bulk import and export"): their routes,
their OpenAPI description, and the mapping from domain values to answers. The file goes
out of the bucket through a pre-signed URL, never through the API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalice.app import Blueprint, Response

from chalicelib import http
from chalicelib.api.auth import PROTECTED
from chalicelib.api.operation import Operation
from chalicelib.bootstrap import services
from chalicelib.schemas import ExportCreate, ExportOut, NewExportOut, parse

# For the type checker only (see chalicelib/api/clients.py).
if TYPE_CHECKING:
    from chalicelib.services.exports import ExportView

bp = Blueprint(__name__)

DOWNLOAD_URL = (
    "http://127.0.0.1:4800/notify-local-imports/exports/1.csv?response-content-type=text%2Fcsv"
    "&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=...&X-Amz-Date=20261128T120000Z"
    "&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=..."
)


@bp.route("/api/exports", methods=["POST"], **PROTECTED)
@Operation(
    "Export a task's messages as CSV",
    "exports",
    "Starts writing every message of the task, with the phone it went to, as a CSV file "
    "(UTF-8, a header row `id,client_id,phone,status,created_at,sent_at,attempts,"
    "last_error`, times in UTC ISO 8601 with Z). A cell starting with `=`, `+`, `-`, `@`, "
    "a tab or a carriage return gets a leading `'` so a spreadsheet shows it as text. "
    "A task that does not exist or was deleted is 404. Read the export with "
    "`GET /api/exports/{export_id}` until it is `done`; the file and the export are kept "
    "7 days.",
    body=ExportCreate,
    body_examples={"a task": {"task_id": 1}},
    not_found=True,
    status=201,
    answer=NewExportOut,
    answer_example={"id": 1, "status": "running"},
)
@http.endpoint
def create_export() -> Response:
    data = parse(ExportCreate, http.json_body(bp.current_request))
    record = services().exports.create(data.task_id)
    return http.ok(NewExportOut(id=record.id, status=record.status.value), status=201)


@bp.route("/api/exports/{export_id}", methods=["GET"], **PROTECTED)
@Operation(
    "Read an export",
    "exports",
    "Its status and the rows written so far; once `done`, `download_url` is the file "
    "(a pre-signed GET valid for an hour, a new one at each read: `curl -o messages.csv "
    '"$download_url"`).',
    answer=ExportOut,
    answer_example={"id": 1, "status": "done", "rows": 3, "download_url": DOWNLOAD_URL},
)
@http.endpoint
def get_export(export_id: str) -> Response:
    view = services().exports.get(http.path_id(export_id, "Export"))
    return http.ok(export_out(view))


def export_out(view: ExportView) -> ExportOut:
    record = view.record
    return ExportOut(
        id=record.id,
        status=record.status.value,
        rows=record.checkpoint.rows,
        download_url=view.download_url,
    )
