"""API keys on every route (issue 3) and request hardening."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

import app as app_module
from chalicelib import http
from chalicelib.errors import NotFound, ValidationFailed
from chalicelib.storage.models import ApiKeyModel, ClientModel
from tests.conftest import Api

PUBLIC = {
    ("/api/health", "GET"),
    ("/openapi.json", "GET"),
    ("/docs", "GET"),
    ("/docs/{asset}", "GET"),  # the script and style sheet of /docs
    ("/admin", "GET"),  # the operator console, which signs in with a key for its calls
    ("/admin/{file}", "GET"),
}
ANN = {"phone": "79001234567", "code": "900", "tag": "vip", "utc": "Europe/Moscow"}


def protected_routes() -> list[tuple[str, str]]:
    routes = [
        (path.replace("{client_id}", "1").replace("{task_id}", "1"), method)
        for path, methods in app_module.app.routes.items()
        for method in methods
        if (path, method) not in PUBLIC
    ]
    assert len(routes) >= 6
    return routes


def snapshot() -> list[dict[str, Any]]:
    return sorted((c.attribute_values for c in ClientModel.scan()), key=lambda c: c["id"])


@pytest.fixture
def existing_client(api: Api) -> dict[str, Any]:
    response = api.post("/api/clients/", ANN)
    assert response.status_code == 201
    return dict(response.json_body)


def assert_unauthorized(response: Any) -> None:
    assert response.status_code == 401, response.body
    assert response.json_body["error"] == "unauthorized"
    assert set(response.json_body) == {"error", "message"}


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Token nk_abcdefghijklmnopqrstuvwxyz",
        "Bearer nk_unknown_key_0123456789abcdef",
        "Bearer short",
        "Bearer two words-0123456789abcdef",
    ],
)
def test_every_protected_route_refuses_without_a_valid_key_and_changes_nothing(
    api: Api, existing_client: dict[str, Any], header: str | None
) -> None:
    before = snapshot()
    for path, method in protected_routes():
        response = api.request(method, path, {"tag": "x", **ANN}, headers={"Authorization": header})
        assert_unauthorized(response)
    assert snapshot() == before


def test_revoked_key_stops_working_at_once(
    api: Api, services: Any, existing_client: dict[str, Any]
) -> None:
    issued = services.api_keys.issue("integrator")
    headers = {"Authorization": f"Bearer {issued.key}"}
    assert api.get("/api/clients/", headers=headers).status_code == 200
    services.api_keys.revoke(issued.info.key_id)
    before = snapshot()
    for path, method in protected_routes():
        assert_unauthorized(api.request(method, path, {"tag": "y"}, headers=headers))
    assert snapshot() == before
    assert api.get("/api/clients/").status_code == 200  # other keys unaffected


def test_the_authorizer_function_answers_as_lambda_calls_it(api_key: str) -> None:
    """In AWS the authorizer is its own function, whose handler is the blueprint module's
    ``bearer_key`` (not app.py): called with API Gateway's TOKEN event, it allows a valid
    key on every route and refuses any other with ``Unauthorized``."""
    (config,) = app_module.app.builtin_auth_handlers
    module, name = config.handler_string.rsplit(".", 1)
    handler = getattr(importlib.import_module(module), name)
    arn = "arn:aws:execute-api:us-east-1:123456789012:abc123/v1/GET/api/clients"

    def event(token: str) -> dict[str, str]:
        return {"type": "TOKEN", "authorizationToken": token, "methodArn": arn}

    policy = handler(event(f"Bearer {api_key}"), None)
    (statement,) = policy["policyDocument"]["Statement"]
    assert (statement["Effect"], statement["Action"]) == ("Allow", "execute-api:Invoke")
    assert statement["Resource"] == ["arn:aws:execute-api:us-east-1:123456789012:abc123/v1/*/*"]
    assert policy["context"]["key_name"]
    for token in ("Bearer nk_unknown", "", f"Basic {api_key}"):
        with pytest.raises(http.AuthorizerRejected, match=r"^Unauthorized$"):
            handler(event(token), None)


def test_lowercase_bearer_scheme_is_accepted(api: Api) -> None:
    assert (
        api.get("/api/clients/", headers={"Authorization": f"bearer {api.key}"}).status_code == 200
    )


def test_only_the_digest_is_stored(api: Api, api_key: str) -> None:
    stored = [record.attribute_values for record in ApiKeyModel.scan()]
    assert stored
    assert all(api_key not in str(values) for values in stored)


def test_health_answers_without_a_key(anonymous: Api) -> None:
    response = anonymous.get("/api/health")
    assert response.status_code == 200


def test_unknown_route_is_404_in_the_error_format(api: Api, anonymous: Api) -> None:
    for client in (api, anonymous):
        response = client.get("/api/nothing-here")
        assert response.status_code == 404
        assert response.json_body["error"] == "not_found"


def test_oversized_body_is_413_on_every_body_route(api: Api, existing_client: Any) -> None:
    big = {**ANN, "tag": "x" * (65 * 1024)}
    before = snapshot()
    for path, method in protected_routes():
        if method in {"POST", "PATCH"}:
            response = api.request(method, path, big)
            assert response.status_code == 413, (path, method)
            assert response.json_body["error"] == "payload_too_large"
    assert snapshot() == before


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_non_json_bodies_are_415(api: Api, existing_client: Any, content_type: str) -> None:
    before = snapshot()
    for path, method in protected_routes():
        if method in {"POST", "PATCH"}:
            response = api.request(method, path, raw="a=1", headers={"Content-Type": content_type})
            assert response.status_code == 415, (path, method)
            assert response.json_body["error"] == "unsupported_media_type"
    assert snapshot() == before


@pytest.mark.parametrize("bad_id", ["abc", "-1", "1.0", "9" * 30, "%00", "1;DROP"])
def test_odd_ids_are_404_never_500(api: Api, bad_id: str) -> None:
    for method in ("GET", "PATCH", "POST", "DELETE"):
        response = api.request(method, f"/api/clients/{bad_id}", {"tag": "x"})
        assert response.status_code in {400, 404}, (method, bad_id, response.body)


def test_internal_errors_hide_their_details(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*_: object, **__: object) -> None:
        raise RuntimeError("secret internal detail: table xyz")

    monkeypatch.setattr(app_module.services().clients, "get", explode)
    response = api.get("/api/clients/1")
    assert response.status_code == 500
    assert response.json_body == {
        "error": "internal_error",
        "message": "An internal error occurred.",
    }
    assert b"secret" not in response.body
    assert b"Traceback" not in response.body


def test_cors_is_off_by_default(api: Api) -> None:
    response = api.get("/api/clients/", headers={"Origin": "https://evil.example"})
    assert not any(h.lower().startswith("access-control") for h in response.headers)
    assert all(
        route.cors is None
        for methods in app_module.app.routes.values()
        for route in methods.values()
    )


def test_key_service_issue_ensure_list_revoke(services: Any) -> None:
    issued = services.api_keys.issue("partner-1")
    assert issued.key.startswith("nk_")
    assert services.api_keys.authenticate(f"Bearer {issued.key}").name == "partner-1"
    # ensure() is idempotent for a live key and never duplicates it
    dev = "development-key-0123456789"
    first = services.api_keys.ensure("development", dev)
    assert services.api_keys.ensure("development", dev) == first
    assert sorted(k.name for k in services.api_keys.list()) == ["development", "partner-1"]
    services.api_keys.revoke(issued.info.key_id)
    assert [k.revoked for k in services.api_keys.list() if k.name == "partner-1"] == [True]
    with pytest.raises(NotFound):
        services.api_keys.revoke("0" * 32)
    with pytest.raises(ValidationFailed):
        services.api_keys.issue("bad\nname")
    with pytest.raises(ValidationFailed):
        services.api_keys.issue("ok", key="too short")
