"""The API's own documentation: ``GET /openapi.json`` and a Swagger UI page, ``GET /docs``.

Everything is served from files packaged with the code, never from a CDN: the OpenAPI
document (``make openapi`` writes it here, and the top-level ``openapi.json`` is a link to
it; its generator, ``tools/openapi.py``, is not deployed), the page, and Swagger UI's script
and style sheet (``swagger-ui/``, from the npm package swagger-ui-dist, refreshed with
``make swagger-ui``). Files are read on first use (``chalicelib.static``), so a cold start
that serves no documentation pays nothing for it.
"""

from __future__ import annotations

from pathlib import Path

from chalice.app import Response

from chalicelib import static

HERE = Path(__file__).resolve().parent
DOCUMENT = HERE / "openapi.json"
PAGE = HERE / "index.html"
ASSET_DIR = HERE / "swagger-ui"
# Asset name -> content type: the only files ``GET /docs/{asset}`` serves.
ASSETS = {
    "swagger-ui.css": static.CSS,
    "swagger-ui-bundle.js": static.JAVASCRIPT,
}
# The assets change only with a deploy; the document and the page are cheap to refetch.
ASSET_CACHE = "public, max-age=3600"
_ASSET_FILES = static.Files(
    ASSET_DIR, ASSETS, what="documentation asset", default_cache=ASSET_CACHE
)


def document() -> Response:
    return static.text_answer(static.read_text(DOCUMENT), "application/json", cache=static.NO_CACHE)


def page() -> Response:
    return static.text_answer(static.read_text(PAGE), static.HTML, cache=static.NO_CACHE)


def asset(name: str) -> Response:
    return _ASSET_FILES.answer(name)
