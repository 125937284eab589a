"""Build the OpenAPI document from the route table and the pydantic schemas.

``make openapi`` (``python -m tools.openapi``) writes it twice, byte for byte the same:
``openapi.json`` at the top level (the contract people read) and
``chalicelib/apidocs/openapi.json`` (the copy Lambda packages and ``GET /openapi.json``
serves). ``--check`` writes nothing and exits 1 when either file is out of date.

This module is never deployed. What a route answers lives here, in :data:`OPERATIONS`,
keyed by the route table's ``(path, method)``: a route missing from it (or an entry
without a route) stops the build, so the document cannot silently fall behind app.py.
Shapes come from ``chalicelib/schemas.py``; nothing here repeats a field.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema

import app as app_module
from chalicelib import apidocs, http
from chalicelib.domain.messages import MessageStatus
from chalicelib.schemas import (
    ClientCreate,
    ClientFilter,
    ClientOut,
    ClientUpdate,
    ErrorOut,
    HealthOut,
    Page,
    ProcessReport,
    TaskCreate,
    TaskOut,
    TaskStatsDetail,
    TaskStatsItem,
    TaskUpdate,
)

ROOT = Path(__file__).resolve().parent.parent
TOP_LEVEL = ROOT / "openapi.json"
OUTPUTS = (TOP_LEVEL, apidocs.DOCUMENT)
OPENAPI_VERSION = "3.1.0"
JSON = "application/json"

Json = dict[str, Any]


@dataclass(frozen=True)
class Operation:
    """What one route takes and answers, beyond what the route table says."""

    operation_id: str
    summary: str
    tag: str
    description: str = ""
    query: tuple[str, ...] = ()  # names in PARAMETERS
    body: type[BaseModel] | None = None
    body_examples: Mapping[str, Any] = field(default_factory=dict)
    status: int = 200
    answer: type[BaseModel] | None = None  # JSON answer; None: no body (204) or `content`
    answer_example: Any = None
    answer_description: str = ""
    content: Mapping[str, Json] | None = None  # a non-JSON answer: media type -> schema
    conflict: str | None = None  # when it may answer 409, and why
    conflict_example: str = ""
    public: bool = False


# Examples ------------------------------------------------------------------------------

CLIENT_IN = {"phone": "79001234567", "code": "900", "tag": "vip", "utc": "Europe/Moscow"}
CLIENT = {"id": 1, **CLIENT_IN}
TASK_IN = {
    "start_time": "2027-03-01T09:00:00+03:00",
    "end_time": "2027-03-01T21:00:00+03:00",
    "text": "Spring sale: 20% off until Sunday",
    "filter": {"codes": ["900"], "tags": ["vip"]},
    "send_window": {"from": "09:00", "to": "21:00"},
}
TASK = {
    "id": 1,
    "start_time": "2027-03-01T06:00:00Z",
    "end_time": "2027-03-01T18:00:00Z",
    "text": TASK_IN["text"],
    "filter": TASK_IN["filter"],
    "send_window": TASK_IN["send_window"],
    "status": "scheduled",
    "created_at": "2026-11-28T12:00:00Z",
    "updated_at": "2026-11-28T12:00:00Z",
}
COUNTS = {"pending": 1, "sent": 2, "failed": 0, "expired": 0}
NEXT = "eyJpZCI6eyJOIjoiMSJ9fQ"
MESSAGE = {
    "id": 10000000001,
    "client_id": 1,
    "status": "sent",
    "created_at": "2027-03-01T06:00:00Z",
    "sent_at": "2027-03-01T06:00:01Z",
    "attempts": 1,
    "last_error": None,
}

# Operations ----------------------------------------------------------------------------

PAGED = ("limit", "cursor")
CLIENT_PHONE_TAKEN = "Another client already has this phone."
CHANGED_MEANWHILE = "changed by another request at the same moment: try again"
TASK_CONFLICT = (
    "The task is running and the change touches more than `end_time` and `send_window`, "
    f"or it has finished; or it was {CHANGED_MEANWHILE}."
)
TASK_CONFLICT_EXAMPLE = (
    "The task is running: only end_time and send_window may change (refused: text)."
)

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("/api/health", "GET"): Operation(
        "health",
        "Is the service up?",
        "service",
        "Needs no key.",
        answer=HealthOut,
        answer_example={"status": "ok"},
        public=True,
    ),
    ("/api/clients", "POST"): Operation(
        "create_client",
        "Add a client",
        "clients",
        "All four fields are required. The service assigns the id.",
        body=ClientCreate,
        body_examples={
            "phone as a string": CLIENT_IN,
            "phone as an integer": {**CLIENT_IN, "phone": 79001234568, "utc": "+03:00"},
        },
        status=201,
        answer=ClientOut,
        answer_example=CLIENT,
        conflict=CLIENT_PHONE_TAKEN,
        conflict_example=CLIENT_PHONE_TAKEN,
    ),
    ("/api/clients", "GET"): Operation(
        "list_clients",
        "List clients",
        "clients",
        "Optionally only those with an operator code and/or a tag, a page at a time.",
        query=("code", "tag", *PAGED),
        answer=Page[ClientOut],
        answer_example={"items": [CLIENT], "next": None},
    ),
    ("/api/clients/{client_id}", "GET"): Operation(
        "get_client", "Read a client", "clients", answer=ClientOut, answer_example=CLIENT
    ),
    ("/api/clients/{client_id}", "POST"): Operation(
        "update_client_by_post",
        "Change a client (same as PATCH)",
        "clients",
        "Partial update: only the fields given change; `null` is refused.",
        body=ClientUpdate,
        body_examples={"new tag": {"tag": "gold"}},
        answer=ClientOut,
        answer_example={**CLIENT, "tag": "gold"},
        conflict=f"{CLIENT_PHONE_TAKEN} Or the client was {CHANGED_MEANWHILE}.",
        conflict_example=CLIENT_PHONE_TAKEN,
    ),
    ("/api/clients/{client_id}", "PATCH"): Operation(
        "update_client",
        "Change a client",
        "clients",
        "Partial update: only the fields given change; `null` is refused.",
        body=ClientUpdate,
        body_examples={"new tag": {"tag": "gold"}, "new zone": {"utc": "Asia/Yekaterinburg"}},
        answer=ClientOut,
        answer_example={**CLIENT, "tag": "gold"},
        conflict=f"{CLIENT_PHONE_TAKEN} Or the client was {CHANGED_MEANWHILE}.",
        conflict_example=CLIENT_PHONE_TAKEN,
    ),
    ("/api/clients/{client_id}", "DELETE"): Operation(
        "delete_client",
        "Delete a client",
        "clients",
        "Frees the phone for another client.",
        status=204,
        answer_description="Deleted; the answer has no body.",
        conflict=f"The client was {CHANGED_MEANWHILE}.",
        conflict_example="The client was changed by another request; try again.",
    ),
    ("/api/tasks", "POST"): Operation(
        "create_task",
        "Create a mailing task",
        "tasks",
        "A task whose start has come starts sending at once (status `running`); one in "
        "the future starts by itself at its start time. `end_time` must be after "
        "`start_time` and in the future. Times need an offset or `Z` and are answered "
        "in UTC.",
        body=TaskCreate,
        body_examples={
            "everything": TASK_IN,
            "every client, no window": {
                "start_time": "2027-03-08T10:00:00Z",
                "end_time": "2027-03-08T20:00:00Z",
                "text": "Happy holidays!",
            },
        },
        status=201,
        answer=TaskOut,
        answer_example=TASK,
    ),
    ("/api/tasks", "GET"): Operation(
        "list_tasks",
        "List mailing tasks",
        "tasks",
        "Every task that was not deleted, a page at a time.",
        query=PAGED,
        answer=Page[TaskOut],
        answer_example={"items": [TASK], "next": NEXT},
    ),
    ("/api/tasks/{task_id}", "GET"): Operation(
        "get_task", "Read a mailing task", "tasks", answer=TaskOut, answer_example=TASK
    ),
    ("/api/tasks/{task_id}", "POST"): Operation(
        "update_task_by_post",
        "Change a mailing task (same as PATCH)",
        "tasks",
        "Before the start any field may change; while running only `end_time` and "
        "`send_window`; a finished task cannot change.",
        body=TaskUpdate,
        body_examples={"later end": {"end_time": "2027-03-02T21:00:00+03:00"}},
        answer=TaskOut,
        answer_example={**TASK, "end_time": "2027-03-02T18:00:00Z"},
        conflict=TASK_CONFLICT,
        conflict_example=TASK_CONFLICT_EXAMPLE,
    ),
    ("/api/tasks/{task_id}", "PATCH"): Operation(
        "update_task",
        "Change a mailing task",
        "tasks",
        "Before the start any field may change; while running only `end_time` and "
        "`send_window`; a finished task cannot change. `send_window: null` removes "
        "the window.",
        body=TaskUpdate,
        body_examples={
            "later end": {"end_time": "2027-03-02T21:00:00+03:00"},
            "no window": {"send_window": None},
            "other audience": {"filter": {"codes": ["900", "901"]}},
        },
        answer=TaskOut,
        answer_example={**TASK, "end_time": "2027-03-02T18:00:00Z"},
        conflict=TASK_CONFLICT,
        conflict_example=TASK_CONFLICT_EXAMPLE,
    ),
    ("/api/tasks/{task_id}", "DELETE"): Operation(
        "delete_task",
        "Delete (stop) a mailing task",
        "tasks",
        "No provider call for the task starts after this answer. There is no "
        "cancelled status: the task is gone.",
        status=204,
        answer_description="Deleted and stopped; the answer has no body.",
    ),
    ("/api/tasks/process", "POST"): Operation(
        "process_due_tasks",
        "Process due tasks now",
        "tasks",
        "Does now what the schedule does every minute: starts due tasks, queues their "
        "messages, expires and finishes tasks. Answers before any message is sent.",
        status=202,
        answer=ProcessReport,
        answer_example={"tasks": 1, "enqueued": 3, "finished": 0},
    ),
    ("/api/tasks/stats", "GET"): Operation(
        "task_stats",
        "Statistics of every task",
        "statistics",
        "Each task with its message counts by status (every status present, zeros "
        "included), a page at a time.",
        query=PAGED,
        answer=Page[TaskStatsItem],
        answer_example={
            "items": [
                {
                    "id": 1,
                    "status": "running",
                    "start_time": TASK["start_time"],
                    "end_time": TASK["end_time"],
                    "total": 3,
                    "messages": COUNTS,
                }
            ],
            "next": None,
        },
    ),
    ("/api/tasks/{task_id}/stats", "GET"): Operation(
        "task_detail_stats",
        "Statistics of one task",
        "statistics",
        "The task, its message counts by status, and its messages a page at a time "
        "(all of them, or only those with `status`).",
        query=("status", *PAGED),
        answer=TaskStatsDetail,
        answer_example={
            "task": {**TASK, "status": "running"},
            "total": 3,
            "messages": COUNTS,
            "items": [MESSAGE],
            "next": NEXT,
        },
    ),
    ("/api/metrics", "GET"): Operation(
        "prometheus_metrics",
        "Service metrics in Prometheus text format",
        "statistics",
        "Messages of the live tasks by status, live tasks by status and the send queue's "
        "depth, for a Prometheus scrape. Read from the maintained counters: its cost grows "
        "with the number of live tasks, never with the number of messages.",
        content={"text/plain; version=0.0.4; charset=utf-8": {"type": "string"}},
        answer_description=(
            "Prometheus text exposition format (`notify_messages{status=...}`, "
            "`notify_messages_created`, `notify_tasks{status=...}`, `notify_queue_jobs`)."
        ),
    ),
    ("/openapi.json", "GET"): Operation(
        "openapi_document",
        "This document",
        "documentation",
        "Needs no key.",
        content={JSON: {"type": "object"}},
        answer_description="The OpenAPI 3.1 document of this API.",
        public=True,
    ),
    ("/docs", "GET"): Operation(
        "docs_page",
        "Interactive documentation (Swagger UI)",
        "documentation",
        "Needs no key. Works offline: its script and style sheet come from this API.",
        content={"text/html": {"type": "string"}},
        answer_description="An HTML page.",
        public=True,
    ),
    ("/docs/{asset}", "GET"): Operation(
        "docs_asset",
        "A script or style sheet of the documentation page",
        "documentation",
        "Needs no key.",
        content={
            "text/css": {"type": "string"},
            "text/javascript": {"type": "string"},
        },
        answer_description="The file.",
        public=True,
    ),
}

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
    "asset": {
        "name": "asset",
        "in": "path",
        "required": True,
        "description": "File name; any other name is 404",
        "schema": {"type": "string", "enum": list(apidocs.ASSETS)},
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


def _responses(path: str, op: Operation, refs: Mapping[type[BaseModel], Json]) -> Json:
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
    if not op.public:
        add(401, "Unauthorized")
    if "{" in path:
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


def _schemas() -> tuple[dict[type[BaseModel], Json], Json]:
    """Component schemas, and a ``$ref`` for each model the operations name."""
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorOut, "serialization")]
    for op in OPERATIONS.values():
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

**Keys.** Every operation except `GET /api/health`, `GET /openapi.json` and `GET /docs`
needs `Authorization: Bearer <key>`.

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
    {"name": "service", "description": "Health"},
    {"name": "documentation", "description": "This document and its Swagger UI page"},
]


def _path_parameters(path: str) -> list[Json]:
    names = re.findall(r"\{(\w+)\}", path)
    return [{"$ref": f"#/components/parameters/{name}"} for name in names]


def _check_routes() -> None:
    routes = {(path, method) for path, views in app_module.app.routes.items() for method in views}
    missing = sorted(routes - set(OPERATIONS))
    stale = sorted(set(OPERATIONS) - routes)
    if missing or stale:
        raise SystemExit(
            "tools/openapi.py OPERATIONS does not match app.py's routes:\n"
            f"  undocumented routes: {missing}\n  entries without a route: {stale}"
        )


def build() -> Json:
    _check_routes()
    refs, schemas = _schemas()
    paths: dict[str, Json] = {}
    for (path, method), op in OPERATIONS.items():
        operation: Json = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
        }
        if op.description:
            operation["description"] = op.description
        parameters = _path_parameters(path) + [
            {"$ref": f"#/components/parameters/{name}"} for name in op.query
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
        operation["responses"] = _responses(path, op, refs)
        if op.public:
            operation["security"] = []
        paths.setdefault(path, {})[method.lower()] = operation
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
    text = render()
    stale = [path for path in OUTPUTS if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is out of date: run make openapi", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
