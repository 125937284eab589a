"""The API serves its own documentation: the OpenAPI document and a Swagger UI page."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

import app as app_module
from chalicelib import apidocs
from local.fake_provider import FakeProviderState
from tests.conftest import ROOT, Api
from tools.openapi import PARAMETERS, operations

# Lambda's limit on a synchronous answer; API Gateway's (10 MB) is larger.
LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024


def test_the_document_is_served_without_a_key(anonymous: Api) -> None:
    response = anonymous.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.body.decode() == (ROOT / "openapi.json").read_text()
    assert json.loads(response.body)["openapi"] == "3.1.0"


@pytest.mark.parametrize("path", ["/docs", "/docs/"])
def test_the_page_is_served_without_a_key_and_loads_nothing_from_elsewhere(
    anonymous: Api, path: str
) -> None:
    response = anonymous.get(path)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    page = response.body.decode()
    assert 'src="docs/swagger-ui-bundle.js"' in page
    assert 'href="docs/swagger-ui.css"' in page
    assert 'url: "openapi.json"' in page
    assert not re.search(r"(https?:)?//[a-z]", page), "the page must work offline"


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("swagger-ui.css", "text/css; charset=utf-8"),
        ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    ],
)
def test_assets_are_served_with_their_content_type(
    anonymous: Api, name: str, content_type: str
) -> None:
    response = anonymous.get(f"/docs/{name}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    assert response.body == (apidocs.ASSET_DIR / name).read_bytes()
    assert "max-age" in response.headers["Cache-Control"]


@pytest.mark.parametrize("name", ["nope.js", "swagger-ui.css.map", "..%2Findex.html", "LICENSE"])
def test_unknown_assets_are_404_in_the_error_format(anonymous: Api, name: str) -> None:
    response = anonymous.get(f"/docs/{name}")
    assert response.status_code == 404
    assert response.json_body["error"] == "not_found"
    assert set(response.json_body) == {"error", "message"}


def test_every_answer_fits_a_lambda_response() -> None:
    for answer in (apidocs.document(), apidocs.page(), *map(apidocs.asset, apidocs.ASSETS)):
        event = answer.to_dict(app_module.app.api.binary_types)
        assert "isBase64Encoded" not in event  # text, passed through as it is
        assert len(json.dumps(event)) < LAMBDA_RESPONSE_LIMIT / 2


def valid_value(name: str) -> str:
    values = {"limit": "5", "cursor": "", "code": "900", "tag": "vip", "status": "sent"}
    return {**values, "bucket": "3600"}[name]


def test_every_documented_query_parameter_is_accepted(api: Api) -> None:
    """The document and the app agree on query parameter names (the fuzzer only sends
    documented ones, so it would not notice a name the app does not know)."""
    task = api.post(
        "/api/tasks/",
        {"start_time": "2027-01-01T00:00:00Z", "end_time": "2027-01-02T00:00:00Z", "text": "x"},
    )
    assert task.status_code == 201
    checked = 0
    for item in operations():
        for name in item.op.query:
            assert PARAMETERS[name]["in"] == "query"
            url = item.path.replace("{task_id}", str(task.json_body["id"]))
            response: Any = api.request(item.method, f"{url}?{name}={valid_value(name)}")
            assert response.status_code == 200, (item.path, name, response.body)
            checked += 1
    assert checked == 14  # the stop list's limit and cursor, the timeline's bucket included


def test_an_undocumented_query_parameter_is_refused(api: Api) -> None:
    response = api.get("/api/tasks/?page=2")
    assert response.status_code == 400
    assert response.json_body["fields"] == {"page": "unknown query parameter"}


TEST_SEND = "/api/tasks/{task_id}/test"


def test_the_test_send_route_is_documented_in_the_document_and_the_guides() -> None:
    operation = json.loads((ROOT / "openapi.json").read_text())["paths"][TEST_SEND]["post"]
    assert set(operation["responses"]) == {"200", "400", "401", "404", "413", "415", "500"}
    assert operation["tags"] == ["tasks"]
    readme = (ROOT / "README.md").read_text()
    guide = (ROOT / "docs" / "integration.md").read_text()
    assert "| `POST /api/tasks/{id}/test` |" in readme and "### Test sends" in readme
    assert "| `POST /api/tasks/{id}/test` |" in guide and "## 14. Test sends" in guide
    assert "[Test sends](#14-test-sends)" in guide


def test_the_test_send_examples_are_answered_as_documented(
    api: Api, provider: FakeProviderState
) -> None:
    """Each body example of the document, sent to a task, is answered 200 with one
    result per distinct phone, each of the answer example's shape."""
    operation = json.loads((ROOT / "openapi.json").read_text())["paths"][TEST_SEND]["post"]
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    answer = operation["responses"]["200"]["content"]["application/json"]["example"]
    task = api.post(
        "/api/tasks/",
        {"start_time": "2027-01-01T00:00:00Z", "end_time": "2027-01-02T00:00:00Z", "text": "x"},
    ).json_body["id"]
    for name, example in examples.items():
        response = api.post(TEST_SEND.replace("{task_id}", str(task)), example["value"])
        assert response.status_code == 200, (name, response.body)
        results = response.json_body["results"]
        assert [r["phone"] for r in results] == [str(p) for p in example["value"]["phones"]]
        assert all(set(r) == set(answer["results"][0]) for r in results)
        assert {r["status"] for r in results} == {"sent"}
    assert {r["status"] for r in answer["results"]} == {"sent", "failed", "suppressed"}


@pytest.mark.parametrize("action", ["pause", "resume", "cancel"])
def test_the_control_routes_are_documented_in_the_document_and_the_guides(action: str) -> None:
    path = f"/api/tasks/{{task_id}}/{action}"
    operation = json.loads((ROOT / "openapi.json").read_text())["paths"][path]["post"]
    assert set(operation["responses"]) == {"200", "401", "404", "409", "500"}
    assert operation["tags"] == ["tasks"]
    readme = (ROOT / "README.md").read_text()
    guide = (ROOT / "docs" / "integration.md").read_text()
    route = f"| `POST /api/tasks/{{id}}/{action}` |"
    assert route in readme and "### Pause, resume, cancel" in readme
    assert route in guide and "## 15. Pause, resume and cancel a mailing" in guide
    assert "[Pause, resume and cancel a mailing](#15-pause-resume-and-cancel-a-mailing)" in guide


def test_the_control_conflicts_are_answered_as_documented(api: Api) -> None:
    """The 409 messages the guide quotes for the controls are the service's."""
    guide = (ROOT / "docs" / "integration.md").read_text()
    client = {"phone": "79001234567", "code": "900", "tag": "", "utc": "UTC"}
    assert api.post("/api/clients/", client).status_code == 201  # a message left to send
    task = api.post(
        "/api/tasks/",
        {"start_time": "2026-11-28T11:00:00Z", "end_time": "2027-01-02T00:00:00Z", "text": "x"},
    ).json_body["id"]
    answers = []
    for action in ("pause", "pause", "resume", "resume", "cancel", "resume"):
        response = api.post(f"/api/tasks/{task}/{action}")
        if response.status_code == 409:
            answers.append(response.json_body["message"])
    assert len(answers) == 3
    for message in answers:
        assert f'"message":"{message}"' in guide, message
