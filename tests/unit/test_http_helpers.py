"""Request parsing at the HTTP edge: ids, limits, bodies, cursors."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from chalicelib import http
from chalicelib.errors import (
    BadRequest,
    InvalidCursor,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
)
from chalicelib.storage.pagination import decode_cursor, encode_cursor

SCHEMA = {"id": "N", "code": "S"}


class FakeRequest:
    def __init__(self, body: bytes | str | None = None, query: dict[str, str] | None = None):
        self.raw_body = body
        self.query_params = query


@pytest.mark.parametrize("value", ["1", "42", str(2**63 - 1)])
def test_path_id_accepts_positive_int64(value: str) -> None:
    assert http.path_id(value, "Client") == int(value)


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", str(2**63), "1e3", "", "٣", " 1"])
def test_path_id_rejects_other_values_as_not_found(value: str) -> None:
    with pytest.raises(NotFound):
        http.path_id(value, "Client")


def test_limit_defaults_and_bounds() -> None:
    assert http.page_limit({}) == 100
    assert http.page_limit({"limit": "1"}) == 1
    assert http.page_limit({"limit": "1000"}) == 1000
    for bad in ["0", "1001", "-5", "ten", "", "1.5"]:
        with pytest.raises(ValidationFailed) as caught:
            http.page_limit({"limit": bad})
        assert caught.value.fields == {"limit": "must be an integer from 1 to 1000"}


def test_unknown_query_parameters_are_named() -> None:
    with pytest.raises(ValidationFailed) as caught:
        http.query(FakeRequest(query={"codes": "1"}), {"code"})  # type: ignore[arg-type]
    assert caught.value.fields == {"codes": "unknown query parameter"}


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"", BadRequest),
        (b"   ", BadRequest),
        (b"{bad", BadRequest),
        (b'{"a": NaN}', BadRequest),
        (b"\xff\xfe", BadRequest),
        (b'{"a": "' + b"x" * (64 * 1024) + b'"}', PayloadTooLarge),
    ],
)
def test_bad_bodies(raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        http.json_body(FakeRequest(raw))  # type: ignore[arg-type]


def test_json_body_decodes_str_and_bytes() -> None:
    assert http.json_body(FakeRequest('{"a": 1}')) == {"a": 1}  # type: ignore[arg-type]
    assert http.json_body(FakeRequest(b"[1]")) == [1]  # type: ignore[arg-type]


def test_cursor_round_trip() -> None:
    key = {"id": {"N": "17"}, "code": {"S": "900"}}
    assert decode_cursor(encode_cursor(key), SCHEMA) == key
    assert decode_cursor(None, SCHEMA) is None
    assert decode_cursor("", SCHEMA) is None


def _forge(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 !",
        _forge("text"),
        _forge({"id": {"N": "1"}}),
        _forge({"id": {"N": "x"}, "code": {"S": "900"}}),
        _forge({"id": {"S": "1"}, "code": {"S": "900"}}),
        _forge({"id": {"N": "1"}, "code": {"S": 900}}),
        _forge({"id": {"N": "1"}, "code": {"S": "900"}, "extra": {"S": "1"}}),
        base64.urlsafe_b64encode(b"\xff\x00").decode(),
    ],
)
def test_forged_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor, SCHEMA)


def test_the_edge_answers_a_refused_cursor_as_a_validation_error_on_cursor() -> None:
    @http.endpoint
    def view() -> Any:
        decode_cursor("not base64 !", SCHEMA)

    response = view()
    assert response.status_code == 400
    assert response.body == {
        "error": "validation_error",
        "message": "The cursor is not valid.",
        "fields": {"cursor": "not a cursor from this list"},
    }


def test_cors_only_when_an_origin_is_configured() -> None:
    assert http.cors_config(None) is None
    assert http.cors_config("") is None
    config = http.cors_config("https://app.example")
    assert config is not None
    assert config.allow_origin == "https://app.example"
    assert "Authorization" in config.allow_headers


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/api/stoplist/79001234567", "/api/stoplist/7900***4567"),
        ("/v1/api/stoplist/79001234567/", "/v1/api/stoplist/7900***4567/"),
        ("/api/stoplist/abc", "/api/stoplist/***"),
    ],
)
def test_a_phone_in_the_path_is_masked_in_the_request_log(path: str, logged: str) -> None:
    assert http.logged_path(path, "/api/stoplist/{phone}") == logged
    assert http.logged_path("/api/clients/71234567890", "/api/clients/{client_id}") == (
        "/api/clients/71234567890"
    )
