"""Files packaged with the code and served as they are: the API's documentation
(``chalicelib.apidocs``) and the operator console (``chalicelib.console``).

Only the names of an allow-list are served, each with its content type, so no request
path ever becomes a file path. Files are read on first use and kept for the container's
life, so a cold start that serves none of them pays nothing for them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from chalice.app import Response

from chalicelib.errors import NotFound

HTML = "text/html; charset=utf-8"
CSS = "text/css; charset=utf-8"
JAVASCRIPT = "text/javascript; charset=utf-8"
# Cheap to refetch, or changed by every deploy under the same name.
NO_CACHE = "no-cache"


@functools.cache
def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def text_answer(
    body: str, content_type: str, *, cache: str, headers: Mapping[str, str] | None = None
) -> Response:
    # A str body with a text content type goes through API Gateway as it is (no base64,
    # no binary_types entry needed); the largest file, Swagger UI's 1.7 MB bundle, is
    # well under its limits.
    return Response(
        body=body,
        status_code=200,
        headers={"Content-Type": content_type, "Cache-Control": cache, **(headers or {})},
    )


@dataclass(frozen=True)
class Files:
    """A folder's files served by name: ``types`` (name -> content type) is the allow-list."""

    directory: Path
    types: Mapping[str, str]
    what: str  # how a 404 names them: "No <what> is named ..."
    cache: Mapping[str, str] = field(default_factory=dict)  # name -> Cache-Control
    default_cache: str = NO_CACHE
    headers: Mapping[str, str] = field(default_factory=dict)  # added to every answer

    def answer(self, name: str) -> Response:
        content_type = self.types.get(name)
        if content_type is None:
            raise NotFound(f"No {self.what} is named {name!r}.")
        return text_answer(
            read_text(self.directory / name),
            content_type,
            cache=self.cache.get(name, self.default_cache),
            headers=self.headers,
        )
