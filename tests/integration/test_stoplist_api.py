"""The stop list API (issue 18) on moto through chalice.test.Client, and the batch lookup
the sender will use right before its provider calls."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib import logs
from chalicelib.storage.models import StopEntryModel
from chalicelib.storage.stoplist import DynamoStopList
from tests.conftest import Api, FrozenClock
from tests.integration.test_observability import Lines

PHONE = "79001234567"
CLIENT = {"phone": PHONE, "code": "900", "tag": "vip", "utc": "Europe/Moscow"}


def stored() -> list[dict[str, Any]]:
    return sorted((e.attribute_values for e in StopEntryModel.scan()), key=lambda e: e["phone"])


def listed(api: Api, query: str = "") -> list[dict[str, Any]]:
    response = api.get(f"/api/stoplist/{query}")
    assert response.status_code == 200, response.body
    assert response.json_body["next"] is None
    return list(response.json_body["items"])


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.body
    body = dict(response.json_body)
    assert body["error"] == code and body["message"]
    assert set(body) <= {"error", "message", "fields"}
    return body


def test_a_phone_is_stopped_listed_and_unstopped(api: Api, clock: FrozenClock) -> None:
    response = api.post("/api/stoplist/", {"phone": PHONE, "reason": "asked by phone"})
    assert response.status_code == 201, response.body
    entry = {"phone": PHONE, "reason": "asked by phone", "created_at": "2026-11-28T12:00:00Z"}
    assert response.json_body == entry
    assert listed(api) == [entry]
    assert api.delete(f"/api/stoplist/{PHONE}").status_code == 204
    assert listed(api) == []
    assert_error(api.delete(f"/api/stoplist/{PHONE}"), 404, "not_found")


def test_an_integer_phone_and_no_reason(api: Api) -> None:
    response = api.post("/api/stoplist", {"phone": int(PHONE)})
    assert response.status_code == 201, response.body
    assert response.json_body["phone"] == PHONE
    assert response.json_body["reason"] is None


def test_stopping_a_phone_twice_is_409_and_keeps_the_first_entry(
    api: Api, clock: FrozenClock
) -> None:
    assert api.post("/api/stoplist/", {"phone": PHONE, "reason": "first"}).status_code == 201
    before = stored()
    clock.advance(minutes=1)
    assert_error(api.post("/api/stoplist/", {"phone": PHONE, "reason": "again"}), 409, "conflict")
    assert stored() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"phone": "89001234567"}, "phone"),
        ({"phone": "7900123456"}, "phone"),
        ({"phone": 89001234567}, "phone"),
        ({"phone": True}, "phone"),
        ({}, "phone"),
        ({"phone": PHONE, "reason": "r" * 501}, "reason"),
        ({"phone": PHONE, "reason": None}, "reason"),
        ({"phone": PHONE, "reason": 5}, "reason"),
        ({"phone": PHONE, "why": "x"}, "why"),
    ],
)
def test_invalid_bodies_are_400_and_store_nothing(
    api: Api, body: dict[str, Any], field: str
) -> None:
    found = assert_error(api.post("/api/stoplist/", body), 400, "validation_error")
    assert field in found["fields"]
    assert stored() == []


def test_a_reason_of_500_characters_is_kept(api: Api) -> None:
    response = api.post("/api/stoplist/", {"phone": PHONE, "reason": "r" * 500})
    assert response.status_code == 201, response.body
    assert stored()[0]["reason"] == "r" * 500


@pytest.mark.parametrize("path", ["abc", "89001234567", "7900123456", "%00", "7" * 40])
def test_a_path_that_is_no_phone_is_404(api: Api, path: str) -> None:
    assert_error(api.delete(f"/api/stoplist/{path}"), 404, "not_found")


def test_the_entry_outlives_the_client(api: Api) -> None:
    client = api.post("/api/clients/", CLIENT).json_body
    assert api.post("/api/stoplist/", {"phone": PHONE}).status_code == 201
    assert api.delete(f"/api/clients/{client['id']}").status_code == 204
    assert [e["phone"] for e in listed(api)] == [PHONE]


def test_pages_give_every_entry_once(api: Api) -> None:
    phones = {f"7900000{n:04d}" for n in range(7)}
    for phone in phones:
        assert api.post("/api/stoplist/", {"phone": phone}).status_code == 201
    seen: list[str] = []
    cursor = ""
    while True:
        page = api.get(f"/api/stoplist/?limit=3{cursor}").json_body
        seen += [e["phone"] for e in page["items"]]
        if page["next"] is None:
            break
        cursor = f"&cursor={page['next']}"
    assert sorted(seen) == sorted(phones)


@pytest.mark.parametrize("query", ["?limit=0", "?limit=1001", "?cursor=abc", "?page=2"])
def test_bad_list_queries_are_400(api: Api, query: str) -> None:
    assert_error(api.get(f"/api/stoplist/{query}"), 400, "validation_error")


def test_without_a_key_is_401_and_changes_nothing(api: Api, anonymous: Api) -> None:
    assert api.post("/api/stoplist/", {"phone": PHONE}).status_code == 201
    before = stored()
    for response in (
        anonymous.get("/api/stoplist/"),
        anonymous.post("/api/stoplist/", {"phone": "79000000001"}),
        anonymous.delete(f"/api/stoplist/{PHONE}"),
    ):
        assert_error(response, 401, "unauthorized")
    assert stored() == before


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    root = logging.getLogger(logs.LOGGER_NAME)
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


def test_the_log_lines_mask_the_phone_even_in_the_path(api: Api, lines: Lines) -> None:
    assert api.post("/api/stoplist/", {"phone": PHONE}).status_code == 201
    assert api.delete(f"/api/stoplist/{PHONE}").status_code == 204
    assert api.delete(f"/api/stoplist/{PHONE}").status_code == 404
    (stopped,) = lines.find("phone stopped")
    (unstopped,) = lines.find("phone unstopped")
    assert stopped["phone"] == unstopped["phone"] == "7900***4567"
    assert stopped["request_id"]
    requests = lines.find("request")
    assert [r["path"] for r in requests[1:]] == ["/api/stoplist/7900***4567"] * 2
    assert not [line for line in lines.lines if PHONE in line]


def test_stopped_answers_which_phones_are_on_the_list(api: Api, services: Any) -> None:
    """The batch lookup the sender will make: more phones than one BatchGetItem takes."""
    stopped = {f"7900000{n:04d}" for n in range(0, 250, 7)}
    for phone in stopped:
        assert api.post("/api/stoplist/", {"phone": phone}).status_code == 201
    asked = [f"7900000{n:04d}" for n in range(250)] + [PHONE, PHONE]
    repository: DynamoStopList = services.stoplist_repository
    assert repository.stopped(asked) == stopped
    assert repository.stopped([]) == set()
    assert repository.stopped([PHONE]) == set()
