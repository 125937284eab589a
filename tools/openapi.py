"""Build the OpenAPI document from the app's route table, the description each blueprint
attaches to its views, and the pydantic schemas.

``make openapi`` (``python -m tools.openapi``) writes it once, to
``chalicelib/apidocs/openapi.json`` (packaged with Lambda and served at
``GET /openapi.json``); ``openapi.json`` at the top level, the contract people read, is a
symbolic link to it, so the two cannot differ. ``--check`` writes nothing and exits 1 when
the document is out of date or the link is not one.

This module is never deployed, and knows no route: what a route answers is written beside
it, as an :class:`~chalicelib.api.operation.Operation` on its view, and a route without
one stops the build. What is built here is what every route shares: the schemas (from
``chalicelib/schemas.py``), the parameters, the error answers and the document's frame.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from chalice.app import RouteEntry
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema

import app as app_module
from chalicelib import apidocs, console, http
from chalicelib.api.operation import Operation, operation_of
from chalicelib.domain.messages import MessageStatus
from chalicelib.domain.timeline import BUCKETS
from chalicelib.schemas import ClientFilter, ErrorOut

ROOT = Path(__file__).resolve().parent.parent
TOP_LEVEL = ROOT / "openapi.json"  # a link to apidocs.DOCUMENT
OPENAPI_VERSION = "3.1.0"
JSON = "application/json"

Json = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Documented:
    """One operation of the document: a route of the table and its view's description."""

    path: str
    method: str
    operation_id: str
    op: Operation
    public: bool  # the route has no authorizer


def operations() -> list[Documented]:
    """Every ``(path, method)`` of the route table, in the order the blueprints register
    them, with its view's description; an undescribed route stops the build."""
    found: list[Documented] = []
    missing: list[tuple[str, str]] = []
    for path, entries in app_module.app.routes.items():
        for method, entry in entries.items():
            op = operation_of(entry.view_function)
            if op is None:
                missing.append((path, method))
            else:
                found.append(_documented(path, method, entry, op, entries))
    if missing:
        raise SystemExit(
            "Routes without an Operation on their view (see chalicelib/api/operation.py):\n"
            f"  undocumented routes: {missing}"
        )
    return found


def _documented(
    path: str, method: str, entry: RouteEntry, op: Operation, entries: Mapping[str, RouteEntry]
) -> Documented:
    """The main method says everything; the alias points to it (see ``Operation``)."""
    methods = [m for m, e in entries.items() if e.view_function is entry.view_function]
    if (len(methods) > 1) != (op.alias in methods):
        raise SystemExit(f"{path} {methods}: an Operation names its alias, if any, as `alias`")
    public = entry.authorizer is None
    if method != op.alias:
        description = " ".join(part for part in (op.description, op.main_note) if part)
        main = dataclasses.replace(op, description=description)
        return Documented(path, method, entry.view_name, main, public)
    (target,) = [m for m in methods if m != method]
    first_example = dict(list(op.body_examples.items())[:1])
    alias = dataclasses.replace(
        op, summary=f"{op.summary} (same as {target})", body_examples=first_example
    )
    return Documented(path, method, f"{entry.view_name}_by_{method.lower()}", alias, public)


# Schemas -------------------------------------------------------------------------------


class _SchemaGenerator(GenerateJsonSchema):
    def field_title_should_be_set(self, schema: Any) -> bool:
        return False  # the property name says it; titles only clutter Swagger UI

    def normalize_name(self, name: str) -> str:
        generic = re.fullmatch(r"Page\[(\w+)\]", name)
        if generic:  # Page[ClientOut] -> ClientPage
            return generic.group(1).removesuffix("Out").removesuffix("Item") + "Page"
        return super().normalize_name(name)


# Parameters ----------------------------------------------------------------------------

# The query's filters are validated by this model, so their schemas come from it.
_CLIENT_FILTER = ClientFilter.model_json_schema(schema_generator=_SchemaGenerator)["properties"]
ID_SCHEMA: Json = {"type": "integer", "format": "int64", "minimum": 1, "maximum": http.MAX_ID}
PARAMETERS: dict[str, Json] = {
    "client_id": {
        "name": "client_id",
        "in": "path",
        "required": True,
        "description": "The client's id (an id that is not a positive integer is 404)",
        "schema": ID_SCHEMA,
        "example": 1,
    },
    "task_id": {
        "name": "task_id",
        "in": "path",
        "required": True,
        "description": "The task's id (an id that is not a positive integer is 404)",
        "schema": ID_SCHEMA,
        "example": 1,
    },
    "import_id": {
        "name": "import_id",
        "in": "path",
        "required": True,
        "description": "The import's id (an id that is not a positive integer is 404)",
        "schema": ID_SCHEMA,
        "example": 1,
    },
    "export_id": {
        "name": "export_id",
        "in": "path",
        "required": True,
        "description": "The export's id (an id that is not a positive integer is 404)",
        "schema": ID_SCHEMA,
        "example": 1,
    },
    "phone": {
        "name": "phone",
        "in": "path",
        "required": True,
        "description": "The stopped phone, 7 followed by ten digits (anything else is 404)",
        "schema": {"type": "string", "pattern": "^7[0-9]{10}$"},
        "example": "79001234567",
    },
    "asset": {
        "name": "asset",
        "in": "path",
        "required": True,
        "description": "File name; any other name is 404",
        "schema": {"type": "string", "enum": list(apidocs.ASSETS)},
    },
    "file": {
        "name": "file",
        "in": "path",
        "required": True,
        "description": "File name; any other name is 404",
        "schema": {"type": "string", "enum": list(console.ASSETS)},
    },
    "limit": {
        "name": "limit",
        "in": "query",
        "description": "Page size",
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": http.MAX_LIMIT,
            "default": http.DEFAULT_LIMIT,
        },
        "example": 50,
    },
    "cursor": {
        "name": "cursor",
        "in": "query",
        "description": "The `next` of the previous page; leave out for the first page",
        "schema": {"type": "string"},
    },
    "code": {
        "name": "code",
        "in": "query",
        "description": "Only clients with this operator code",
        "schema": _CLIENT_FILTER["code"],
        "example": "900",
    },
    "tag": {
        "name": "tag",
        "in": "query",
        "description": "Only clients with exactly this tag",
        "schema": _CLIENT_FILTER["tag"],
        "example": "vip",
    },
    "bucket": {
        "name": "bucket",
        "in": "query",
        "description": "Seconds a point covers; by default the smallest giving at most 500 points",
        "schema": {"type": "integer", "enum": list(BUCKETS)},
        "example": 3600,
    },
    "status": {
        "name": "status",
        "in": "query",
        "description": "Only messages with this status",
        "schema": {"type": "string", "enum": [status.value for status in MessageStatus]},
    },
}

# Error answers -------------------------------------------------------------------------

ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}


def _error(description: str, examples: Mapping[str, Json]) -> Json:
    return {
        "description": description,
        "content": {
            JSON: {
                "schema": ERROR_REF,
                "examples": {name: {"value": value} for name, value in examples.items()},
            }
        },
    }


ERRORS: dict[str, Json] = {
    "BadRequest": _error(
        "Invalid fields (`validation_error`, with `fields`: unknown fields, wrong types "
        "and values, unknown query parameters, a bad cursor) or a body that is not JSON "
        "(`bad_request`). Nothing changed.",
        {
            "invalid field": {
                "error": "validation_error",
                "message": "The request has invalid fields.",
                "fields": {"phone": "must be 7 followed by ten digits"},
            },
            "unknown query parameter": {
                "error": "validation_error",
                "message": "Unknown query parameters.",
                "fields": {"page": "unknown query parameter"},
            },
            "not JSON": {"error": "bad_request", "message": "The body is not valid JSON."},
        },
    ),
    "Unauthorized": _error(
        "No key, or a malformed, unknown or revoked one (the answer never says which).",
        {
            "no key": {
                "error": "unauthorized",
                "message": "A valid API key is required: Authorization: Bearer <key>.",
            }
        },
    ),
    "NotFound": _error(
        "Nothing has this id (an id that is not a positive integer names nothing).",
        {"unknown id": {"error": "not_found", "message": "Client 42 does not exist."}},
    ),
    "PayloadTooLarge": _error(
        f"The body is over {http.MAX_BODY_BYTES // 1024} KiB. Nothing changed.",
        {
            "too large": {
                "error": "payload_too_large",
                "message": f"The body is larger than {http.MAX_BODY_BYTES} bytes.",
            }
        },
    ),
    "UnsupportedMediaType": _error(
        "The body is not `application/json`. Nothing changed.",
        {
            "form body": {
                "error": "unsupported_media_type",
                "message": "Unsupported media type: text/plain",
            }
        },
    ),
    "InternalError": _error(
        "Something failed inside the service; the answer never carries details.",
        {"internal": {"error": "internal_error", "message": "An internal error occurred."}},
    ),
}


def _responses(item: Documented, refs: Mapping[type[BaseModel], Json]) -> Json:
    op = item.op
    success: Json = {"description": op.answer_description or "Success."}
    if op.answer is not None:
        media: Json = {"schema": refs[op.answer]}
        if op.answer_example is not None:
            media["example"] = op.answer_example
        success["content"] = {JSON: media}
    elif op.content is not None:
        success["content"] = {kind: {"schema": schema} for kind, schema in op.content.items()}
    success["headers"] = {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}}
    answers: Json = {str(op.status): success}

    def add(status: int, name: str) -> None:
        answers[str(status)] = {"$ref": f"#/components/responses/{name}"}

    if op.body is not None or op.query:
        add(400, "BadRequest")
    if not item.public:
        add(401, "Unauthorized")
    if "{" in item.path or op.not_found:
        add(404, "NotFound")
    if op.conflict:
        answers["409"] = _error(
            op.conflict,
            {"conflict": {"error": "conflict", "message": op.conflict_example}},
        )
    if op.body is not None:
        add(413, "PayloadTooLarge")
        add(415, "UnsupportedMediaType")
    add(500, "InternalError")
    return answers


def _schemas(ops: Sequence[Operation]) -> tuple[dict[type[BaseModel], Json], Json]:
    """Component schemas, and a ``$ref`` for each model the operations name."""
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorOut, "serialization")]
    for op in ops:
        if op.body is not None:
            wanted.append((op.body, "validation"))
        if op.answer is not None:
            wanted.append((op.answer, "serialization"))
    unique = list(dict.fromkeys(wanted))
    refs, top = models_json_schema(
        unique, ref_template="#/components/schemas/{model}", schema_generator=_SchemaGenerator
    )
    by_model = {cast(type[BaseModel], model): dict(ref) for (model, _mode), ref in refs.items()}
    schemas: Json = dict(sorted(top["$defs"].items()))
    for name, schema in schemas.items():
        if "[" in schema.get("title", ""):
            schema["title"] = name  # Page[ClientOut] is shown as ClientPage
    return by_model, schemas


# The document --------------------------------------------------------------------------

DESCRIPTION = """\
Keep a directory of clients, schedule mailings ("tasks") to the clients that match a
filter, and read delivery statistics. The integration guide, `docs/integration.md` in
the repository, explains every rule with `curl` examples.

**Keys.** Every operation except `GET /api/health`, `GET /openapi.json`, `GET /docs` and
the operator console's page and files (`GET /admin`) needs `Authorization: Bearer <key>`.

**Bodies** are JSON (`Content-Type: application/json`, at most 64 KiB). Unknown fields
are refused. Trailing slashes are optional: `/api/clients/` is `/api/clients`.

**Errors** always look like `{"error": "<code>", "message": "<text>", "fields": {...}}`
(`fields` only for validation errors); a refused request changes nothing.

**Pages.** Lists answer `{"items": [...], "next": "<cursor>" | null}`; pass `next` back
as `cursor` for the following page. `limit` is 1 to 1000 (100 by default).

**Time.** Send instants as ISO 8601 with an offset or `Z` (a time without one is
refused); answers are in UTC with `Z`. A client's `utc` is an IANA zone name
(`Europe/Moscow`) or a fixed offset (`+03:00`); a task's `send_window` is in each
client's local time and may cross midnight.
"""

TAGS = [
    {"name": "clients", "description": "The client directory"},
    {"name": "tasks", "description": "Mailing tasks and their lifecycle"},
    {"name": "statistics", "description": "Delivery statistics"},
    {"name": "audience", "description": "Who a filter reaches, before a mailing"},
    {"name": "stop list", "description": "Phones no message may go to"},
    {"name": "imports", "description": "Bulk import of clients from a CSV file, through S3"},
    {
        "name": "exports",
        "description": "A task's messages as a CSV file, through S3",
    },
    {"name": "service", "description": "Health"},
    {"name": "documentation", "description": "This document and its Swagger UI page"},
    {"name": "console", "description": "The operator console's page and files"},
]


def _path_names(path: str) -> list[str]:
    return re.findall(r"\{(\w+)\}", path)


def _check_names(documented: Sequence[Documented]) -> None:
    """A tag or parameter a description names must be defined here: else it would be a
    dangling reference in the document."""
    tags = {item.op.tag for item in documented} - {tag["name"] for tag in TAGS}
    names = {n for item in documented for n in (*_path_names(item.path), *item.op.query)}
    unknown = sorted(tags | (names - set(PARAMETERS)))
    if unknown:
        raise SystemExit(f"tools/openapi.py defines no tag or parameter named: {unknown}")


def build() -> Json:
    documented = operations()
    _check_names(documented)
    refs, schemas = _schemas([item.op for item in documented])
    paths: dict[str, Json] = {}
    for item in documented:
        op = item.op
        operation: Json = {
            "operationId": item.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
        }
        if op.description:
            operation["description"] = op.description
        parameters = [
            {"$ref": f"#/components/parameters/{name}"}
            for name in (*_path_names(item.path), *op.query)
        ]
        if parameters:
            operation["parameters"] = parameters
        if op.body is not None:
            media: Json = {"schema": refs[op.body]}
            if op.body_examples:
                media["examples"] = {
                    name: {"value": value} for name, value in op.body_examples.items()
                }
            operation["requestBody"] = {"required": True, "content": {JSON: media}}
        operation["responses"] = _responses(item, refs)
        if item.public:
            operation["security"] = []
        paths.setdefault(item.path, {})[item.method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Notification service API",
            "version": _version(),
            "description": DESCRIPTION,
        },
        # Relative to where the document is served, so that a stage prefix (/v1/...) or
        # a custom domain needs no change.
        "servers": [{"url": ".", "description": "This server"}],
        "security": [{"bearerAuth": []}],
        "tags": TAGS,
        "paths": paths,
        "components": {
            "schemas": schemas,
            "parameters": PARAMETERS,
            "responses": ERRORS,
            "headers": {
                "RequestId": {
                    "description": "Id of this request in the service's logs",
                    "schema": {"type": "string"},
                }
            },
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key: `make run` prints a development key; "
                    "`python -m local.keys create NAME` issues one.",
                }
            },
        },
    }


def _version() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return str(project["project"]["version"])


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    if TOP_LEVEL.resolve() != apidocs.DOCUMENT:
        target = apidocs.DOCUMENT.relative_to(ROOT)
        print(f"{TOP_LEVEL.name} must be a link: ln -sf {target} {TOP_LEVEL.name}", file=sys.stderr)
        return 1
    text = render()
    name = apidocs.DOCUMENT.relative_to(ROOT)
    if apidocs.DOCUMENT.exists() and apidocs.DOCUMENT.read_text() == text:
        return 0
    if args.check:
        print(f"{name} is out of date: run make openapi", file=sys.stderr)
        return 1
    apidocs.DOCUMENT.write_text(text)
    print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
