"""The audience preview (issue 18) and the counters every client write keeps exact, on
moto through chalice.test.Client."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from chalicelib.storage.models import CounterModel
from tests.conftest import Api

CODES = ["900", "901", "902"]
TAGS = ["", "vip", "new"]


def client_body(n: int, code: str, tag: str) -> dict[str, Any]:
    return {"phone": f"7900{n:07d}", "code": code, "tag": tag, "utc": "UTC"}


def add(api: Api, n: int, code: str, tag: str) -> dict[str, Any]:
    response = api.post("/api/clients/", client_body(n, code, tag))
    assert response.status_code == 201, response.body
    return dict(response.json_body)


def preview(api: Api, filter_: Any) -> dict[str, Any]:
    response = api.post("/api/audience/preview", {"filter": filter_})
    assert response.status_code == 200, response.body
    return dict(response.json_body)


def matches(client: dict[str, Any], codes: list[str], tags: list[str]) -> bool:
    return (not codes or client["code"] in codes) and (not tags or client["tag"] in tags)


def every_client(api: Api) -> list[dict[str, Any]]:
    return list(api.get("/api/clients/?limit=1000").json_body["items"])


def audience_counters() -> dict[str, int]:
    return {
        item.name: int(item.value)
        for item in CounterModel.scan(CounterModel.name.startswith("aud#"))
    }


FILTERS: list[tuple[list[str], list[str]]] = [
    ([], []),
    (["900"], []),
    (["900", "902", "900"], []),
    ([], ["vip"]),
    ([], ["new", "vip"]),
    (["901"], ["vip", "new"]),
    (["900", "901", "902"], ["new"]),
    (["999"], []),
    ([], ["nobody"]),
    (["900"], ["nobody"]),
]


def assert_previews_are_exact(api: Api) -> None:
    clients = every_client(api)
    for codes, tags in FILTERS:
        answer = preview(api, {"codes": codes, "tags": tags})
        expected = [c for c in clients if matches(c, codes, tags)]
        assert answer["count"] == len(expected), (codes, tags)
        assert len(answer["sample"]) == min(10, len(expected)), (codes, tags)
        assert all(c in expected for c in answer["sample"]), (codes, tags)
        assert len({c["id"] for c in answer["sample"]}) == len(answer["sample"])


def test_counts_stay_exact_through_creates_updates_and_deletes(api: Api) -> None:
    rng = random.Random(18)
    ids = [add(api, n, rng.choice(CODES), rng.choice(TAGS))["id"] for n in range(30)]
    assert_previews_are_exact(api)
    for n, client_id in enumerate(ids[:15]):
        change = rng.choice(
            [
                {"code": rng.choice(CODES)},
                {"tag": rng.choice(TAGS)},
                {"code": rng.choice(CODES), "tag": rng.choice(TAGS)},
                {"phone": f"7911{n:07d}"},
                {"utc": "+03:00"},
            ]
        )
        assert api.patch(f"/api/clients/{client_id}", change).status_code == 200
    for client_id in ids[15:22]:
        assert api.delete(f"/api/clients/{client_id}").status_code == 204
    assert_previews_are_exact(api)


def test_a_refused_client_write_moves_no_counter(api: Api) -> None:
    first = add(api, 1, "900", "vip")
    second = add(api, 2, "901", "new")
    before = audience_counters()
    taken = client_body(9, "902", "")
    taken["phone"] = first["phone"]
    assert api.post("/api/clients/", taken).status_code == 409
    change = {"phone": first["phone"], "code": "902"}
    assert api.patch(f"/api/clients/{second['id']}", change).status_code == 409
    assert api.patch(f"/api/clients/{second['id']}", {"code": ""}).status_code == 400
    assert audience_counters() == before
    assert preview(api, {"codes": ["902"]})["count"] == 0


def test_the_sample_is_the_clients_api_representation(api: Api) -> None:
    created = [add(api, n, "900", "vip") for n in range(12)]
    answer = preview(api, {"codes": ["900"], "tags": ["vip"]})
    assert answer["count"] == 12
    assert answer["sample"] == created[:10]  # the index's order: by id


def test_an_empty_directory_and_an_absent_filter(api: Api) -> None:
    assert preview(api, {}) == {"count": 0, "sample": []}
    response = api.post("/api/audience/preview", {})
    assert response.status_code == 200
    assert response.json_body == {"count": 0, "sample": []}
    add(api, 1, "900", "")
    assert api.post("/api/audience/preview/", {}).json_body["count"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"filter": {"codes": ["900"], "age": 3}}, "filter.age"),
        ({"filter": {"codes": [""]}}, "filter.codes.0"),
        ({"filter": {"codes": "900"}}, "filter.codes"),
        ({"filter": {"tags": [5]}}, "filter.tags.0"),
        ({"filter": {"tags": ["t"] * 101}}, "filter.tags"),
        ({"filter": {"codes": ["c" * 101]}}, "filter.codes.0"),
        ({"filter": None}, "filter"),
        ({"filter": []}, "filter"),
        ({"filter": {}, "limit": 5}, "limit"),
    ],
)
def test_invalid_filters_are_400_as_for_a_task(api: Api, body: Any, field: str) -> None:
    response = api.post("/api/audience/preview", body)
    assert response.status_code == 400, response.body
    assert response.json_body["error"] == "validation_error"
    assert field in response.json_body["fields"], response.json_body
    task = {"start_time": "2027-01-01T00:00:00Z", "end_time": "2027-01-02T00:00:00Z", "text": "t"}
    task_answer = api.post("/api/tasks/", {**task, **body})
    assert task_answer.status_code == 400
    assert response.json_body["fields"].get(field) == task_answer.json_body["fields"].get(field)


def test_without_a_key_is_401(anonymous: Api) -> None:
    response = anonymous.post("/api/audience/preview", {"filter": {}})
    assert response.status_code == 401
    assert response.json_body["error"] == "unauthorized"


@pytest.fixture
def dynamodb_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    calls: Counter[str] = Counter()
    real_call = BaseClient._make_api_call

    def counting_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
        if client.meta.service_model.service_name == "dynamodb":
            calls[operation] += 1
            if "IndexName" in params:
                calls[f"{operation} {params['IndexName']}"] += 1
        return real_call(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", counting_call)
    yield calls


def test_only_everyone_scans_and_the_reads_are_few(api: Api, dynamodb_calls: Counter[str]) -> None:
    for n in range(40):
        add(api, n, CODES[n % 3], TAGS[n % 3])
    for filter_, most in [
        ({"codes": ["900", "901"]}, {"BatchGetItem": 1, "Query": 1}),  # 14 in 900
        ({"codes": ["900", "901"], "tags": ["new"]}, {"BatchGetItem": 1}),  # nobody
        ({"codes": ["902", "901"], "tags": ["vip"]}, {"BatchGetItem": 1, "Query": 1}),
        ({"tags": ["vip"]}, {"BatchGetItem": 1, "Query": 1}),
        ({}, {"BatchGetItem": 1, "Scan": 1}),
    ]:
        dynamodb_calls.clear()
        preview(api, filter_)
        calls = {  # the key's GetItem and the index breakdown left out
            op: n for op, n in dynamodb_calls.items() if op != "GetItem" and " " not in op
        }
        assert calls == most, (filter_, calls)


def test_the_largest_filter_reads_its_ten_thousand_counters(
    api: Api, dynamodb_calls: Counter[str]
) -> None:
    add(api, 1, "c7", "t3")
    big = {"codes": [f"c{n}" for n in range(100)], "tags": [f"t{n}" for n in range(100)]}
    dynamodb_calls.clear()
    answer = preview(api, big)
    assert answer["count"] == 1 and answer["sample"][0]["code"] == "c7"
    # The codes' and tags' own counters (200: two requests), then the one pair of a code
    # and a tag somebody has, not the 10,000 pairs.
    assert dynamodb_calls["BatchGetItem"] == 3
    assert dynamodb_calls["Scan"] == 0


def test_every_code_and_tag_populated_reads_every_pair(
    api: Api, dynamodb_calls: Counter[str]
) -> None:
    codes, tags = [f"c{n}" for n in range(20)], [f"t{n}" for n in range(20)]
    for n in range(20):
        add(api, n, codes[n], tags[(n + 1) % 20])
    dynamodb_calls.clear()
    assert preview(api, {"codes": codes, "tags": tags})["count"] == 20
    assert dynamodb_calls["BatchGetItem"] == 1 + 4  # 40 totals, then 400 pairs


def test_the_sample_walks_the_smaller_side(api: Api, dynamodb_calls: Counter[str]) -> None:
    for n in range(30):
        add(api, n, "900", "" if n < 28 else "rare")
    for n in range(30, 35):
        add(api, n, "901", "common")
    dynamodb_calls.clear()
    answer = preview(api, {"codes": ["900"], "tags": ["rare"]})
    assert answer["count"] == 2
    assert [c["tag"] for c in answer["sample"]] == ["rare", "rare"]
    assert dynamodb_calls["Query by_tag"] == 1 and dynamodb_calls["Query by_code"] == 0
    dynamodb_calls.clear()
    answer = preview(api, {"codes": ["901"], "tags": ["common", "rare"]})
    assert answer["count"] == 5
    assert dynamodb_calls["Query by_code"] == 1 and dynamodb_calls["Query by_tag"] == 0


def test_a_write_that_meets_another_on_a_counter_is_tried_again(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every client write now shares the everyone counter with every other: DynamoDB
    cancels one of two transactions that meet on it (TransactionConflict). That is a
    moment's contention, not a refusal: the write is tried again, and counted once."""
    real_call = BaseClient._make_api_call
    conflicts = {"left": 2}

    def conflicting_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
        if operation == "TransactWriteItems" and conflicts["left"]:
            conflicts["left"] -= 1
            reasons = [{"Code": "None"}] * (len(params["TransactItems"]) - 1)
            raise ClientError(
                {
                    "Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
                    "CancellationReasons": [*reasons, {"Code": "TransactionConflict"}],
                },
                operation,
            )
        return real_call(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", conflicting_call)
    created = add(api, 1, "900", "vip")
    conflicts["left"] = 1
    assert api.patch(f"/api/clients/{created['id']}", {"tag": "new"}).status_code == 200
    conflicts["left"] = 1
    second = add(api, 2, "900", "vip")
    conflicts["left"] = 2
    assert api.delete(f"/api/clients/{second['id']}").status_code == 204
    assert conflicts["left"] == 0
    assert preview(api, {})["count"] == 1
    assert preview(api, {"tags": ["new"]})["count"] == 1
    assert preview(api, {"tags": ["vip"]})["count"] == 0
