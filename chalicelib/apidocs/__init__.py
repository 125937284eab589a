"""The API's own documentation: ``GET /openapi.json`` and a Swagger UI page, ``GET /docs``.

Everything is served from files packaged with the code, never from a CDN: the OpenAPI
document (``make openapi`` writes it here, and the top-level ``openapi.json`` is a link to
it; its generator, ``tools/openapi.py``, is not deployed), the page, and Swagger UI's script
and style sheet (``swagger-ui/``, from the npm package swagger-ui-dist, refreshed with
``make swagger-ui``). Files are read on first use, so a cold start that serves no
documentation pays nothing for it.
"""

from __future__ import annotations

import functools
from pathlib import Path

from chalice.app import Response

from chalicelib.errors import NotFound

HERE = Path(__file__).resolve().parent
DOCUMENT = HERE / "openapi.json"
PAGE = HERE / "index.html"
ASSET_DIR = HERE / "swagger-ui"
# Asset name -> content type: the only files ``GET /docs/{asset}`` serves.
ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
}
# The assets change only with a deploy; the document and the page are cheap to refetch.
ASSET_CACHE = "public, max-age=3600"


@functools.cache
def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def document() -> Response:
    return _answer(_read(DOCUMENT), "application/json", cache="no-cache")


def page() -> Response:
    return _answer(_read(PAGE), "text/html; charset=utf-8", cache="no-cache")


def asset(name: str) -> Response:
    content_type = ASSETS.get(name)
    if content_type is None:
        raise NotFound(f"No documentation asset is named {name!r}.")
    return _answer(_read(ASSET_DIR / name), content_type, cache=ASSET_CACHE)


def _answer(body: str, content_type: str, *, cache: str) -> Response:
    # A str body with a text content type goes through API Gateway as it is (no base64,
    # no binary_types entry needed); the bundle, about 1.7 MB, is well under its limits.
    return Response(
        body=body,
        status_code=200,
        headers={"Content-Type": content_type, "Cache-Control": cache},
    )
