"""The client directory API (SPEC items 11, 12, 13, 100) on moto through chalice.test.Client."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.storage.models import ClientModel, PhoneModel
from tests.conftest import Api

ANN = {"phone": "79001234567", "code": "900", "tag": "vip", "utc": "Europe/Moscow"}
BOB = {"phone": "79007654321", "code": "901", "tag": "", "utc": "+03:00"}


def create(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/api/clients/", body)
    assert response.status_code == 201, response.body
    return dict(response.json_body)


def all_clients(api: Api) -> list[dict[str, Any]]:
    response = api.get("/api/clients/?limit=1000")
    assert response.status_code == 200
    return list(response.json_body["items"])


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.body
    assert response.headers["Content-Type"] == "application/json"
    body = dict(response.json_body)
    assert body["error"] == code
    assert isinstance(body["message"], str)
    assert body["message"]
    assert set(body) <= {"error", "message", "fields"}
    return body


# --- create -----------------------------------------------------------------------------


def test_create_returns_201_with_a_service_assigned_integer_id(api: Api) -> None:
    created = create(api, ANN)
    assert isinstance(created["id"], int)
    assert created == {"id": created["id"], **ANN}
    assert api.get(f"/api/clients/{created['id']}").json_body == created


def test_ids_are_distinct_and_growing(api: Api) -> None:
    first = create(api, ANN)["id"]
    second = create(api, BOB)["id"]
    assert second > first


def test_integer_phone_is_stored_as_a_string(api: Api) -> None:
    created = create(api, {**ANN, "phone": 79001234567})
    assert created["phone"] == "79001234567"


def test_trailing_slash_is_optional(api: Api) -> None:
    assert api.post("/api/clients", ANN).status_code == 201
    assert api.get("/api/clients").status_code == 200
    assert api.get("/api/clients/").status_code == 200


def test_same_phone_twice_is_409_and_the_first_client_is_unchanged(api: Api) -> None:
    first = create(api, ANN)
    response = api.post("/api/clients/", {**BOB, "phone": ANN["phone"]})
    assert_error(response, 409, "conflict")
    assert all_clients(api) == [first]
    assert PhoneModel.get(ANN["phone"]).client_id == first["id"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("phone", "89001234567"),
        ("phone", "+79001234567"),
        ("code", ""),
        ("code", "c" * 101),
        ("tag", "t" * 2001),
        ("utc", "Mars/Olympus"),
        ("utc", "+25:00"),
        ("extra", "x"),
    ],
)
def test_invalid_field_is_400_naming_it_and_nothing_is_stored(
    api: Api, field: str, value: str
) -> None:
    body = assert_error(api.post("/api/clients/", {**ANN, field: value}), 400, "validation_error")
    assert list(body["fields"]) == [field]
    assert all_clients(api) == []
    assert PhoneModel.count() == 0


def test_missing_fields_are_each_named(api: Api) -> None:
    body = assert_error(api.post("/api/clients/", {"phone": ANN["phone"]}), 400, "validation_error")
    assert set(body["fields"]) == {"code", "tag", "utc"}


@pytest.mark.parametrize("raw", ["{not json", "", "[1, 2]", '"text"', "null"])
def test_malformed_or_non_object_bodies_are_400(api: Api, raw: str) -> None:
    response = api.post("/api/clients/", raw=raw)
    assert response.status_code == 400
    assert response.json_body["error"] in {"bad_request", "validation_error"}
    assert all_clients(api) == []


def test_non_json_content_type_is_415(api: Api) -> None:
    response = api.post(
        "/api/clients/", raw="phone=79001234567", headers={"Content-Type": "text/plain"}
    )
    assert_error(response, 415, "unsupported_media_type")
    assert all_clients(api) == []


def test_oversized_body_is_413(api: Api) -> None:
    response = api.post("/api/clients/", {**ANN, "tag": "x" * (70 * 1024)})
    assert_error(response, 413, "payload_too_large")


# --- read -------------------------------------------------------------------------------


@pytest.mark.parametrize("client_id", ["999", "abc", "-1", "0", str(2**64)])
def test_unknown_or_malformed_id_is_404(api: Api, client_id: str) -> None:
    assert_error(api.get(f"/api/clients/{client_id}"), 404, "not_found")


def test_unsupported_method_answers_in_the_error_format(api: Api) -> None:
    created = create(api, ANN)
    assert_error(
        api.request("PUT", f"/api/clients/{created['id']}", ANN), 405, "method_not_allowed"
    )


# --- update -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_update_is_partial(api: Api, method: str) -> None:
    created = create(api, ANN)
    response = api.request(method, f"/api/clients/{created['id']}", {"tag": "gold"})
    assert response.status_code == 200
    assert response.json_body == {**created, "tag": "gold"}
    assert api.get(f"/api/clients/{created['id']}").json_body == {**created, "tag": "gold"}


def test_update_of_every_field(api: Api) -> None:
    created = create(api, ANN)
    changes = {"phone": 79990000000, "code": "999", "tag": "", "utc": "-04:30"}
    response = api.patch(f"/api/clients/{created['id']}", changes)
    assert response.status_code == 200
    assert response.json_body == {
        "id": created["id"],
        "phone": "79990000000",
        "code": "999",
        "tag": "",
        "utc": "-04:30",
    }


def test_phone_change_frees_the_old_phone(api: Api) -> None:
    ann = create(api, ANN)
    api.patch(f"/api/clients/{ann['id']}", {"phone": "79990000000"})
    assert create(api, BOB | {"phone": ANN["phone"]})["phone"] == ANN["phone"]
    assert PhoneModel.count() == 2


def test_update_to_a_phone_in_use_is_409_and_changes_nothing(api: Api) -> None:
    ann = create(api, ANN)
    bob = create(api, BOB)
    response = api.patch(f"/api/clients/{bob['id']}", {"phone": ANN["phone"], "tag": "new"})
    assert_error(response, 409, "conflict")
    assert api.get(f"/api/clients/{bob['id']}").json_body == bob
    assert api.get(f"/api/clients/{ann['id']}").json_body == ann
    assert PhoneModel.get(ANN["phone"]).client_id == ann["id"]
    assert PhoneModel.get(BOB["phone"]).client_id == bob["id"]


def test_update_to_own_phone_is_fine(api: Api) -> None:
    ann = create(api, ANN)
    response = api.patch(f"/api/clients/{ann['id']}", {"phone": ANN["phone"]})
    assert response.status_code == 200
    assert response.json_body == ann


def test_invalid_update_changes_nothing(api: Api) -> None:
    ann = create(api, ANN)
    response = api.patch(f"/api/clients/{ann['id']}", {"tag": "ok", "utc": "Mars/Olympus"})
    body = assert_error(response, 400, "validation_error")
    assert body["fields"] == {
        "utc": "must be an IANA time zone name (Europe/Moscow) or an offset (+03:00)"
    }
    assert api.get(f"/api/clients/{ann['id']}").json_body == ann


def test_update_of_unknown_client_is_404(api: Api) -> None:
    assert_error(api.patch("/api/clients/77", {"tag": "x"}), 404, "not_found")
    assert PhoneModel.count() == 0


def test_empty_update_changes_nothing(api: Api) -> None:
    ann = create(api, ANN)
    response = api.patch(f"/api/clients/{ann['id']}", {})
    assert response.status_code == 200
    assert response.json_body == ann


# --- delete -----------------------------------------------------------------------------


def test_delete_then_get_is_404_and_the_phone_is_free_again(api: Api) -> None:
    ann = create(api, ANN)
    response = api.delete(f"/api/clients/{ann['id']}")
    assert response.status_code == 204
    assert response.body == b""
    assert_error(api.get(f"/api/clients/{ann['id']}"), 404, "not_found")
    assert_error(api.delete(f"/api/clients/{ann['id']}"), 404, "not_found")
    assert PhoneModel.count() == 0
    assert create(api, ANN)["id"] != ann["id"]


# --- list -------------------------------------------------------------------------------


def make_clients(api: Api, count: int, **fields: str) -> list[dict[str, Any]]:
    return [
        create(
            api, {"phone": f"7{900_000_0000 + n}", "code": "900", "tag": "", "utc": "UTC"} | fields
        )
        for n in range(count)
    ]


def pages(api: Api, query: str) -> list[list[dict[str, Any]]]:
    seen: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        url = f"/api/clients/?{query}" + (f"&cursor={cursor}" if cursor else "")
        response = api.get(url)
        assert response.status_code == 200, response.body
        seen.append(response.json_body["items"])
        cursor = response.json_body["next"]
        if cursor is None:
            return seen


def test_paging_250_clients_by_100_gives_3_pages_covering_each_once(api: Api) -> None:
    made = make_clients(api, 250)
    got = pages(api, "limit=100")
    assert [len(page) for page in got] == [100, 100, 50]
    ids = [client["id"] for page in got for client in page]
    assert sorted(ids) == sorted(c["id"] for c in made)
    assert len(set(ids)) == 250


def test_default_page_size_is_100(api: Api) -> None:
    make_clients(api, 101)
    first = api.get("/api/clients/").json_body
    assert len(first["items"]) == 100
    assert first["next"] is not None


def test_exact_last_page_has_no_next(api: Api) -> None:
    make_clients(api, 4)
    assert [len(p) for p in pages(api, "limit=2")] == [2, 2]


def test_filters_by_code_and_tag_use_indexes_not_scans(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann = create(api, ANN)
    bob = create(api, BOB)
    cid = create(api, {"phone": "79001112233", "code": "900", "tag": "", "utc": "UTC"})

    def no_scan(*_: object, **__: object) -> None:
        raise AssertionError("a filtered list must not scan the table")

    monkeypatch.setattr(ClientModel, "scan", no_scan)
    ids = lambda query: [c["id"] for c in api.get(f"/api/clients/?{query}").json_body["items"]]  # noqa: E731
    assert ids("code=900") == [ann["id"], cid["id"]]
    assert ids("tag=vip") == [ann["id"]]
    assert ids("tag=") == [bob["id"], cid["id"]]
    assert ids("code=900&tag=") == [cid["id"]]
    assert ids("code=901&tag=vip") == []
    assert ids("code=nobody") == []


def test_filtered_paging_covers_each_match_once(api: Api) -> None:
    matching = make_clients(api, 7, tag="promo")
    create(api, {**BOB, "tag": "other"})
    got = pages(api, "tag=promo&limit=3")
    assert [len(p) for p in got] == [3, 3, 1]
    assert [c["id"] for p in got for c in p] == [c["id"] for c in matching]
    got = pages(api, "code=900&tag=promo&limit=3")
    assert [c["id"] for p in got for c in p] == [c["id"] for c in matching]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=abc", "limit"),
        ("cursor=garbage", "cursor"),
        ("codes=900", "codes"),
    ],
)
def test_bad_list_parameters_are_400_naming_them(api: Api, query: str, field: str) -> None:
    body = assert_error(api.get(f"/api/clients/?{query}"), 400, "validation_error")
    assert list(body["fields"]) == [field]


def test_cursor_from_another_filter_is_rejected(api: Api) -> None:
    make_clients(api, 3)
    cursor = api.get("/api/clients/?limit=1").json_body["next"]
    body = assert_error(api.get(f"/api/clients/?code=900&cursor={cursor}"), 400, "validation_error")
    assert list(body["fields"]) == ["cursor"]


# --- health -----------------------------------------------------------------------------


def test_health(api: Api) -> None:
    response = api.get("/api/health")
    assert response.status_code == 200
    assert response.json_body == {"status": "ok"}


# --- list filters -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [("code=", "code"), ("code=" + "9" * 101, "code"), ("tag=" + "t" * 2001, "tag")],
)
def test_list_filters_out_of_range_are_400_not_500(api: Api, query: str, field: str) -> None:
    # An empty code used to reach DynamoDB as an empty key value (a 500).
    create(api, ANN)
    body = assert_error(api.get(f"/api/clients/?{query}"), 400, "validation_error")
    assert list(body["fields"]) == [field]


def test_an_empty_tag_filter_lists_the_clients_without_a_tag(api: Api) -> None:
    create(api, ANN)
    bob = create(api, BOB)
    response = api.get("/api/clients/?tag=")
    assert response.status_code == 200
    assert [client["id"] for client in response.json_body["items"]] == [bob["id"]]
