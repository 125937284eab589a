"""The operator console, public: its page and the files the page loads.

The files are served by ``chalicelib.console``; every call the page makes goes to the
documented ``/api`` routes with the key the operator signs in with.
"""

from __future__ import annotations

from chalice.app import Blueprint, Response

from chalicelib import console, http
from chalicelib.api.operation import Operation
from chalicelib.bootstrap import services

bp = Blueprint(__name__)


@bp.route("/admin", methods=["GET"])
@Operation(
    "The operator console",
    "console",
    "Needs no key to load; the operator signs in with an API key, which every call the "
    "page makes to this API carries. Works offline: its scripts and style sheets come from "
    "this API.",
    content={"text/html": {"type": "string"}},
    answer_description="An HTML page.",
)
@http.endpoint
def console_page() -> Response:
    context = bp.current_request.context or {}
    return console.page(str(context.get("path") or ""), services().import_files.upload_origin)


@bp.route("/admin/{file}", methods=["GET"])
@Operation(
    "A script or style sheet of the operator console",
    "console",
    "Needs no key.",
    content={"text/css": {"type": "string"}, "text/javascript": {"type": "string"}},
    answer_description="The file.",
)
@http.endpoint
def console_file(file: str) -> Response:
    return console.asset(file)
