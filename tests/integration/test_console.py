"""The operator console is served by the API itself: its page and files, public, with a
strict Content-Security-Policy, nothing inline and nothing from the internet."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

import app as app_module
from chalicelib import console
from tests.conftest import Api

LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src {connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# The console's own files (the vendored libraries are checked for loads only).
OWN = [name for name in console.ASSETS if name not in console.VENDORED]
# The import bucket's regional host (moto answers it in-process): where the pre-signed
# upload URLs point, so the only origin besides the API's that the page may call.
BUCKET_ORIGIN = "https://notify-local-imports.s3.us-east-1.amazonaws.com"


def assert_secured(headers: dict[str, str], connect: str = "'self'") -> None:
    assert headers["Content-Security-Policy"] == CSP.format(connect=connect)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"


def test_the_page_is_served_without_a_key_with_a_strict_policy(anonymous: Api) -> None:
    response = anonymous.get("/admin")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert_secured(response.headers, connect=f"'self' {BUCKET_ORIGIN}")
    page = response.body.decode()
    assert response.body == console.PAGE.read_bytes()
    assert '<script type="module" src="admin/app.js"></script>' in page


def test_the_pages_policy_names_the_origin_the_upload_urls_point_at(
    api: Api, anonymous: Api
) -> None:
    """The console PUTs an import's file to its pre-signed URL from the browser: the
    page's connect-src names that URL's origin, exactly (no wildcard, no other host)."""
    upload_url = api.post("/api/imports/", {"format": "csv"}).json_body["upload_url"]
    assert upload_url.startswith(f"{BUCKET_ORIGIN}/imports/")
    policy = anonymous.get("/admin").headers["Content-Security-Policy"]
    (connect,) = [d for d in policy.split("; ") if d.startswith("connect-src ")]
    assert connect == f"connect-src 'self' {BUCKET_ORIGIN}"
    assert "*" not in policy


@pytest.mark.parametrize(
    "origin",
    ["*", "https://*.amazonaws.com", "https://a.example; script-src *", "https://a.example/x", ""],
)
def test_a_policy_never_names_anything_but_an_origin(origin: str) -> None:
    with pytest.raises(ValueError, match="not an origin"):
        console.page_policy(origin)
    assert "connect-src 'self' http://127.0.0.1:4800;" in console.page_policy(
        "http://127.0.0.1:4800"
    )


def test_the_page_asked_with_a_trailing_slash_redirects_to_the_page(anonymous: Api) -> None:
    """The page's links are relative to .../admin; from .../admin/ they would miss."""
    response = anonymous.get("/admin/")
    assert response.status_code == 308
    assert response.headers["Location"] == "../admin"


@pytest.mark.parametrize(("name", "content_type"), sorted(console.ASSETS.items()))
def test_each_file_is_served_with_its_content_type(
    anonymous: Api, name: str, content_type: str
) -> None:
    response = anonymous.get(f"/admin/{name}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    assert response.body == (console.HERE / name).read_bytes()
    assert_secured(response.headers)
    assert ("max-age" in response.headers["Cache-Control"]) == (name in console.VENDORED)


@pytest.mark.parametrize(
    "name",
    [
        "nope.js",
        "index.html",
        "__init__.py",
        "VENDOR",
        "htm.LICENSE",
        "..%2F__init__.py",
        "..%2F..%2Fapp.py",
        "%2E%2E",
        "app.js%00.css",
    ],
)
def test_unknown_files_and_path_traversal_are_404_in_the_error_format(
    anonymous: Api, name: str
) -> None:
    response = anonymous.get(f"/admin/{name}")
    assert response.status_code == 404
    assert response.json_body["error"] == "not_found"
    assert set(response.json_body) == {"error", "message"}


def test_every_file_of_the_allow_list_exists_and_every_script_is_listed() -> None:
    assert all((console.HERE / name).is_file() for name in console.ASSETS)
    served = {path.name for path in console.HERE.glob("*.js")} | {
        path.name for path in console.HERE.glob("*.css")
    }
    assert served == set(console.ASSETS)


class _Inline(HTMLParser):
    """Whatever a strict policy would refuse in a page: inline script or style."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "style":
            self.found.append("<style>")
        if "style" in names:
            self.found.append(f"style attribute on <{tag}>")
        self.found += [f"{name} on <{tag}>" for name in names if name.startswith("on")]
        if tag == "script":
            self._in_script = True
            if "src" not in names:
                self.found.append("<script> without src")
        for name, value in attrs:
            if name in ("href", "src") and value and value.lower().startswith("javascript:"):
                self.found.append(f"{name}=javascript: on <{tag}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.found.append("inline script text")


def test_the_served_page_has_no_inline_script_or_style(anonymous: Api) -> None:
    parser = _Inline()
    parser.feed(anonymous.get("/admin").body.decode())
    assert parser.found == []
    parser = _Inline()
    parser.feed('<p style="x" onclick="y"><script>alert(1)</script>')  # the check can fail
    assert len(parser.found) == 4


# An address in a place where the browser would load it.
# (Module specifiers are always quoted: a comment's "from https://..." is no import.)
LOAD = re.compile(
    r"""(?:\bfrom\s*["']|\bimport\s*\(\s*["']|\burl\(\s*["']?|@import\s*["']?|"""
    r"""\bsrc\s*=\s*["']?|\bhref\s*=\s*["']?|\bfetch\(\s*["'])\s*(?:https?:)?//""",
    re.IGNORECASE,
)


@pytest.mark.parametrize("name", ["index.html", *console.ASSETS])
def test_no_file_loads_anything_from_elsewhere(name: str) -> None:
    text = (console.HERE / name).read_text(encoding="utf-8")
    assert not LOAD.search(text), LOAD.search(text)
    if name in OWN or name == "index.html":
        assert not re.search(r"https?://", text), "the console's own files name no address"
    assert LOAD.search('import x from "https://cdn.example/x.js"')  # the check can fail


def test_every_answer_fits_a_lambda_response() -> None:
    page = console.page("/admin", "http://127.0.0.1:4800")
    for answer in (page, *map(console.asset, console.ASSETS)):
        event = answer.to_dict(app_module.app.api.binary_types)
        assert "isBase64Encoded" not in event  # text, passed through as it is
        assert len(json.dumps(event)) < LAMBDA_RESPONSE_LIMIT / 2
