"""The operator console (SPEC, "Operator console"): ``GET /admin`` and its files,
``GET /admin/{file}``, served by the API itself and public (every call the page makes
carries the key the operator signs in with).

The page is static: no build step, no template, nothing from the internet. Its ES modules
(``app.js`` and one module per screen) import the vendored libraries beside them
(``make console-vendor``; versions in ``VENDOR``). Every answer carries a strict
Content-Security-Policy: scripts, styles and calls only from this API, no inline script or
style, no framing; the page's own policy also lets it PUT a CSV file to the import
bucket's origin (the pre-signed URL of ``POST /api/imports/``), named exactly, never a
wildcard.
"""

from __future__ import annotations

import re
from pathlib import Path

from chalice.app import Response

from chalicelib import static

HERE = Path(__file__).resolve().parent
PAGE = HERE / "index.html"
# File name -> content type: the only files ``GET /admin/{file}`` serves.
ASSETS = {
    "console.css": static.CSS,
    "app.js": static.JAVASCRIPT,
    "lib.js": static.JAVASCRIPT,
    "i18n.js": static.JAVASCRIPT,
    "clients.js": static.JAVASCRIPT,
    "imports.js": static.JAVASCRIPT,
    "tasks.js": static.JAVASCRIPT,
    "stats.js": static.JAVASCRIPT,
    "stoplist.js": static.JAVASCRIPT,
    "preact-htm.js": static.JAVASCRIPT,
    "uPlot.esm.js": static.JAVASCRIPT,
    "uPlot.min.css": static.CSS,
}
# The libraries change only with their version (make console-vendor); the console's own
# modules change with every deploy under the same names and import each other, so they
# are revalidated: an hour of cached old modules beside new ones could break the page.
VENDOR_CACHE = "public, max-age=86400"
VENDORED = ("preact-htm.js", "uPlot.esm.js", "uPlot.min.css")
# img-src allows data: for the favicon placeholder; uPlot draws on a canvas.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src {connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
CONTENT_SECURITY_POLICY = POLICY.format(connect="'self'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# An origin as a policy may name it: a scheme, a host and maybe a port, nothing that
# could end the directive or add another.
ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")
_FILES = static.Files(
    HERE,
    ASSETS,
    what="console file",
    cache=dict.fromkeys(VENDORED, VENDOR_CACHE),
    headers=SECURITY_HEADERS,
)


def page_policy(upload_origin: str) -> str:
    """The page's policy: its calls go to this API and, for an import's file, to the
    bucket's origin (``S3ImportFiles.upload_origin``)."""
    if not ORIGIN.fullmatch(upload_origin):
        raise ValueError(f"not an origin a policy may name: {upload_origin!r}")
    return POLICY.format(connect=f"'self' {upload_origin}")


def page(path: str, upload_origin: str) -> Response:
    """The page, or, asked for as ``.../admin/``, a redirect to ``.../admin``: the page's
    relative links (``admin/app.js``) resolve from ``/admin`` only. Relative, so it
    keeps the stage's prefix (``/v1``) and the fragment (the screen)."""
    if path.endswith("/admin/"):
        return Response(
            body="",
            status_code=308,
            headers={"Location": "../admin", "Cache-Control": static.NO_CACHE},
        )
    headers = {**SECURITY_HEADERS, "Content-Security-Policy": page_policy(upload_origin)}
    return static.text_answer(
        static.read_text(PAGE), static.HTML, cache=static.NO_CACHE, headers=headers
    )


def asset(name: str) -> Response:
    return _FILES.answer(name)
