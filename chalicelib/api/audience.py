"""The audience preview (issue 18): its route, its OpenAPI description, and the HTTP
edge's mapping from the request model to domain values and back."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalice.app import Blueprint, Response

from chalicelib import http
from chalicelib.api.auth import PROTECTED
from chalicelib.api.clients import CLIENT, client_out
from chalicelib.api.operation import Operation
from chalicelib.bootstrap import services
from chalicelib.schemas import AudiencePreviewIn, AudiencePreviewOut, parse

# For the type checker only (see chalicelib/api/clients.py).
if TYPE_CHECKING:
    from chalicelib.services.audience import Preview

bp = Blueprint(__name__)


@bp.route("/api/audience/preview", methods=["POST"], **PROTECTED)
@Operation(
    "Preview a filter's audience",
    "audience",
    "How many clients a task's `filter` matches now (exact), and up to 10 of them. The "
    "filter is exactly a task's: codes OR-ed, tags OR-ed, the two AND-ed; `{}` (or no "
    "filter) is everyone. The count is what a mailing created now would reach; the "
    "sample is the first clients the mailing itself would read, and may be shorter than "
    "10 when the matches are rare among many clients. Nothing changes.",
    body=AudiencePreviewIn,
    body_examples={
        "codes and tags": {"filter": {"codes": ["900", "901"], "tags": ["vip"]}},
        "everyone": {"filter": {}},
    },
    answer=AudiencePreviewOut,
    answer_example={"count": 1, "sample": [CLIENT]},
)
@http.endpoint
def preview_audience() -> Response:
    data = parse(AudiencePreviewIn, http.json_body(bp.current_request))
    preview = services().audience.preview(data.filter.codes, data.filter.tags)
    return http.ok(preview_out(preview))


def preview_out(preview: Preview) -> AudiencePreviewOut:
    return AudiencePreviewOut(
        count=preview.count, sample=[client_out(client) for client in preview.sample]
    )
