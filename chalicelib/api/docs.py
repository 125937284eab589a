"""The API's own documentation, public: the OpenAPI document and its Swagger UI page.

The files are served by ``chalicelib.apidocs``; ``make openapi`` writes the document from
the routes of every blueprint and their :class:`Operation` descriptions, these included.
"""

from __future__ import annotations

from chalice.app import Blueprint, Response

from chalicelib import apidocs, http
from chalicelib.api.operation import Operation

bp = Blueprint(__name__)


@bp.route("/openapi.json", methods=["GET"])
@Operation(
    "This document",
    "documentation",
    "Needs no key.",
    content={http.JSON_CONTENT_TYPE: {"type": "object"}},
    answer_description="The OpenAPI 3.1 document of this API.",
)
@http.endpoint
def openapi_document() -> Response:
    return apidocs.document()


@bp.route("/docs", methods=["GET"])
@Operation(
    "Interactive documentation (Swagger UI)",
    "documentation",
    "Needs no key. Works offline: its script and style sheet come from this API.",
    content={"text/html": {"type": "string"}},
    answer_description="An HTML page.",
)
@http.endpoint
def docs_page() -> Response:
    return apidocs.page()


@bp.route("/docs/{asset}", methods=["GET"])
@Operation(
    "A script or style sheet of the documentation page",
    "documentation",
    "Needs no key.",
    content={"text/css": {"type": "string"}, "text/javascript": {"type": "string"}},
    answer_description="The file.",
)
@http.endpoint
def docs_asset(asset: str) -> Response:
    return apidocs.asset(asset)
