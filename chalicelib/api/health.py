"""``GET /api/health``: is the service up? Public, and touches no storage."""

from __future__ import annotations

from chalice.app import Blueprint, Response

from chalicelib import http
from chalicelib.api.operation import Operation
from chalicelib.schemas import HealthOut

bp = Blueprint(__name__)


@bp.route("/api/health", methods=["GET"])
@Operation(
    "Is the service up?",
    "service",
    "Needs no key.",
    answer=HealthOut,
    answer_example={"status": "ok"},
)
@http.endpoint
def health() -> Response:
    return Response(body={"status": "ok"}, status_code=200, headers=http.json_headers())
