"""Bounded parsing of outside input: JSON depth, cursors, instants, zone names."""

from __future__ import annotations

import base64
import json

import pytest

from chalicelib import safejson
from chalicelib.domain.clients import parse_utc
from chalicelib.domain.tasks import parse_instant
from chalicelib.errors import InvalidCursor
from chalicelib.storage.pagination import decode_cursor, encode_cursor


@pytest.mark.parametrize(
    ("text", "deepest"),
    [('"x"', 0), ("[]", 1), ('{"a": [1]}', 2), ('["[[[", "\\"[["]', 1), ("[" * 5000, 5000)],
)
def test_depth_ignores_brackets_in_strings(text: str, deepest: int) -> None:
    assert safejson.depth(text) == deepest


def test_loads_bounds_depth_and_numbers() -> None:
    assert safejson.loads("[" * 64 + "]" * 64) is not None
    with pytest.raises(safejson.TooDeep):
        safejson.loads("[" * 65 + "]" * 65)
    with pytest.raises(safejson.TooDeep):
        safejson.loads("[" * 100_000)
    for text in ("1e999", "-1e999", "NaN", "Infinity", "-Infinity", "[1e400]"):
        with pytest.raises(ValueError):
            safejson.loads(text)
    assert safejson.loads('{"a": 1.5e10}') == {"a": 1.5e10}


def cursor(key: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def test_cursor_round_trip_and_pinned_values() -> None:
    key = {"task_id": {"N": "7"}, "client_id": {"N": "3"}, "status": {"S": "pending"}}
    schema = {"task_id": "N", "client_id": "N", "status": "S"}
    text = encode_cursor(key)
    assert decode_cursor(text, schema, {"task_id": "7", "status": "pending"}) == key
    for fixed in ({"task_id": "8"}, {"status": "sent"}):
        with pytest.raises(InvalidCursor):
            decode_cursor(text, schema, fixed)


@pytest.mark.parametrize(
    "key",
    [
        {"id": {"N": str(2**63)}},
        {"id": {"N": "01"}},
        {"id": {"N": "-1"}},
        {"id": {"S": "1"}},
        {"id": {"N": "1"}, "code": {"S": "900"}},
        {"id": [[[1]]]},
    ],
)
def test_cursor_refuses_keys_dynamodb_would_refuse(key: object) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor(key), {"id": "N"})


@pytest.mark.parametrize("value", ["", "\ud800", "é" * 513])
def test_cursor_refuses_strings_dynamodb_would_refuse(value: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor({"id": {"N": "1"}, "code": {"S": value}}), {"id": "N", "code": "S"})


def test_cursor_refuses_deep_and_long_text() -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor("[" * 3000), {"id": "N"})
    with pytest.raises(InvalidCursor):
        decode_cursor("A" * 5000, {"id": "N"})


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_instants_without_a_utc_form_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse_instant(value)


@pytest.mark.parametrize(
    "zone", ["localtime", "Factory", "posixrules", "posix/Europe/Moscow", "right/UTC"]
)
def test_zones_that_depend_on_the_host_are_refused(zone: str) -> None:
    with pytest.raises(ValueError):
        parse_utc(zone)
