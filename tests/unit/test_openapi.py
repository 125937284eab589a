"""The OpenAPI document: committed as generated, valid, complete, and its examples true."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

import app as app_module
from chalicelib import apidocs
from chalicelib.api.operation import operation_of
from chalicelib.schemas import (
    AudiencePreviewIn,
    ClientCreate,
    ClientUpdate,
    ExportCreate,
    ImportCreate,
    StopEntryCreate,
    TaskCreate,
    TaskUpdate,
    TestSendIn,
    parse,
)
from tests.conftest import ROOT
from tools import openapi

DOCUMENT = openapi.build()
PUBLIC = {("/api/health", "GET"), ("/openapi.json", "GET"), ("/docs", "GET"), ("/admin", "GET")}
REQUEST_MODELS: dict[str, Any] = {
    model.__name__: model
    for model in (
        ClientCreate,
        ClientUpdate,
        TaskCreate,
        TaskUpdate,
        StopEntryCreate,
        AudiencePreviewIn,
        TestSendIn,
        ImportCreate,
        ExportCreate,
    )
}


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method.upper(), operation)
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
    ]


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (``#/components/...``) to what it names."""
    while "$ref" in node:
        target: Any = DOCUMENT
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    # The document's components travel with the schema so that its $refs resolve.
    return Draft202012Validator(
        {**schema, "components": DOCUMENT["components"]},
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def test_the_committed_document_is_what_the_code_generates() -> None:
    assert apidocs.DOCUMENT.read_text() == openapi.render(), "stale: run make openapi"
    assert openapi.main(["--check"]) == 0


def test_the_top_level_document_is_a_link_to_the_served_one() -> None:
    """One document in the repository: what people read is what GET /openapi.json serves."""
    top = ROOT / "openapi.json"
    assert top.is_symlink()
    assert top.resolve() == apidocs.DOCUMENT.resolve()


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOCUMENT["openapi"].startswith("3.1")
    validate(json.loads(openapi.render()))


def test_every_route_is_documented_and_nothing_else() -> None:
    routes = {(path, method) for path, views in app_module.app.routes.items() for method in views}
    documented = {(path, method) for path, method, _ in operations()}
    assert documented == routes
    assert len({operation["operationId"] for _, _, operation in operations()}) == len(routes)


def test_only_health_the_docs_and_the_console_need_no_key() -> None:
    assert DOCUMENT["security"] == [{"bearerAuth": []}]
    assert DOCUMENT["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    public = {(path, method) for path, method, op in operations() if op.get("security") == []}
    assert public >= PUBLIC
    assert all(path.startswith(("/docs/", "/admin/")) for path, _ in public - PUBLIC)
    for path, method, operation in operations():
        assert ("401" in operation["responses"]) == ((path, method) not in public), path


def test_error_answers_are_documented_where_they_can_happen() -> None:
    for path, method, operation in operations():
        answers = operation["responses"]
        assert "500" in answers, (path, method)
        if "requestBody" in operation:
            assert {"400", "413", "415"} <= set(answers), (path, method)
        if "{" in path:
            assert "404" in answers, (path, method)
        if any(resolve(p)["in"] == "query" for p in operation.get("parameters", [])):
            assert "400" in answers, (path, method)
        for status, answer in answers.items():
            if int(status) >= 400:
                schema = resolve(answer)["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (path, status)


def test_every_operation_has_a_documented_success() -> None:
    expected = {
        ("/api/clients", "POST"): "201",
        ("/api/tasks", "POST"): "201",
        ("/api/tasks/process", "POST"): "202",
        ("/api/clients/{client_id}", "DELETE"): "204",
        ("/api/tasks/{task_id}", "DELETE"): "204",
        ("/api/stoplist", "POST"): "201",
        ("/api/imports", "POST"): "201",
        ("/api/exports", "POST"): "201",
        ("/api/stoplist/{phone}", "DELETE"): "204",
    }
    for path, method, operation in operations():
        successes = [status for status in operation["responses"] if status.startswith("2")]
        assert successes == [expected.get((path, method), "200")], (path, method)
        answer = operation["responses"][successes[0]]
        assert ("content" in answer) == (successes[0] != "204"), (path, method)


def test_list_operations_document_paging() -> None:
    for path in (
        "/api/clients",
        "/api/tasks",
        "/api/tasks/stats",
        "/api/tasks/{task_id}/stats",
        "/api/stoplist",
    ):
        names = {resolve(p)["name"] for p in DOCUMENT["paths"][path]["get"]["parameters"]}
        assert {"limit", "cursor"} <= names
    limit = DOCUMENT["components"]["parameters"]["limit"]["schema"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 1000, 100)


def test_request_examples_are_accepted_by_the_schema_and_the_models() -> None:
    seen = 0
    for path, method, operation in operations():
        if "requestBody" not in operation:
            continue
        media = operation["requestBody"]["content"]["application/json"]
        model = REQUEST_MODELS[media["schema"]["$ref"].rsplit("/", 1)[1]]
        for name, example in media["examples"].items():
            errors = list(validator(media["schema"]).iter_errors(example["value"]))
            assert not errors, (path, method, name, errors)
            parse(model, example["value"])
            seen += 1
    assert seen >= 10


def test_answer_examples_match_their_schemas() -> None:
    seen = 0
    for path, method, operation in operations():
        for status, answer in operation["responses"].items():
            for media in resolve(answer).get("content", {}).values():
                examples = [e["value"] for e in media.get("examples", {}).values()]
                if "example" in media:
                    examples.append(media["example"])
                for example in examples:
                    errors = list(validator(media["schema"]).iter_errors(example))
                    assert not errors, (path, method, status, errors)
                    seen += 1
    assert seen >= 40


@pytest.mark.parametrize(
    ("model", "field"),
    [("ClientUpdate", "phone"), ("ClientUpdate", "utc"), ("TaskUpdate", "text")],
)
def test_optional_fields_are_not_nullable_unless_null_means_something(
    model: str, field: str
) -> None:
    schemas = DOCUMENT["components"]["schemas"]
    assert not validator(schemas[model]).is_valid({field: None})
    assert validator(schemas["TaskUpdate"]).is_valid({"send_window": None})


def test_a_route_without_documentation_stops_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    view = app_module.app.routes["/api/health"]["GET"].view_function
    monkeypatch.delattr(view, "__operation__")
    with pytest.raises(SystemExit, match="undocumented routes"):
        openapi.build()


def test_a_view_serving_two_methods_must_name_its_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    view = app_module.app.routes["/api/clients/{client_id}"]["PATCH"].view_function
    monkeypatch.setattr(view, "__operation__", replace(operation_of(view), alias=None))
    with pytest.raises(SystemExit, match="alias"):
        openapi.build()


def test_the_post_alias_points_to_patch_and_says_it_once() -> None:
    for path in ("/api/clients/{client_id}", "/api/tasks/{task_id}"):
        alias, main = DOCUMENT["paths"][path]["post"], DOCUMENT["paths"][path]["patch"]
        assert alias["operationId"] == main["operationId"] + "_by_post"
        assert alias["summary"] == main["summary"] + " (same as PATCH)"
        assert main["description"].startswith(alias["description"])
        alias_examples = alias["requestBody"]["content"]["application/json"]["examples"]
        main_examples = main["requestBody"]["content"]["application/json"]["examples"]
        assert list(alias_examples) == list(main_examples)[:1]
        assert alias["responses"] == main["responses"]
