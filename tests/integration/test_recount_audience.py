"""The one-off rebuild of the audience counters (tools/recount_audience.py): clients
stored before the counters existed are counted, stale counters zeroed, twice is once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.domain.audience import EVERYONE, CountKey
from chalicelib.storage import audience
from chalicelib.storage.models import ClientModel, PhoneModel, tag_key
from local.run import count_audience_once
from tests.conftest import Api


def legacy_client(client_id: int, code: str, tag: str) -> None:
    """A client as written before the counters: no counter moved."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ClientModel(
        id=client_id,
        phone=f"7900{client_id:07d}",
        code=code,
        tag=tag,
        tag_key=tag_key(tag),
        utc="UTC",
        created_at=now,
        updated_at=now,
    ).save()
    PhoneModel(f"7900{client_id:07d}", client_id=client_id).save()


def count(api: Api, filter_: dict[str, Any]) -> int:
    response = api.post("/api/audience/preview", {"filter": filter_})
    assert response.status_code == 200, response.body
    return int(response.json_body["count"])


def test_the_rebuild_counts_clients_from_before_the_counters(api: Api, services: Any) -> None:
    for n in range(1, 8):
        legacy_client(1000 + n, "900" if n % 2 else "901", "vip" if n < 4 else "")
    assert count(api, {}) == 0  # what the counters say before the rebuild
    assert not audience.counted()
    counts = audience.recount(now_ms=1)
    assert audience.counted()
    assert counts[EVERYONE] == 7
    assert counts[CountKey("900", "vip")] == 2
    assert count(api, {}) == 7
    assert count(api, {"codes": ["900"]}) == 4
    assert count(api, {"codes": ["901"], "tags": ["vip"]}) == 1
    # Writes through the API keep the rebuilt counters exact.
    assert api.patch("/api/clients/1001", {"code": "901"}).status_code == 200
    assert count(api, {"codes": ["901"], "tags": ["vip"]}) == 2
    assert api.delete("/api/clients/1002").status_code == 204
    assert count(api, {"codes": ["901"]}) == 3


def test_a_second_rebuild_changes_nothing_and_zeroes_what_is_gone(api: Api, services: Any) -> None:
    legacy_client(1, "900", "vip")
    legacy_client(2, "902", "gone")
    audience.recount(now_ms=1)
    ClientModel.get(2).delete()  # outside the API: the counters do not know
    audience.recount(now_ms=2)
    assert count(api, {"codes": ["902"]}) == 0
    assert count(api, {"tags": ["gone"]}) == 0
    assert count(api, {}) == 1
    audience.recount(now_ms=3)
    assert count(api, {"codes": ["900"], "tags": ["vip"]}) == 1


def test_make_run_counts_kept_data_once(
    api: Api, services: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The local stack keeps its data across restarts: the first start after the counters
    came counts the clients it kept; the next starts leave the counters to the writes."""
    legacy_client(1, "900", "vip")
    count_audience_once()
    assert "audience counters rebuilt" in capsys.readouterr().out
    assert count(api, {}) == 1
    legacy_client(2, "900", "vip")  # not through the API: a restart must not recount it
    count_audience_once()
    assert capsys.readouterr().out == ""
    assert count(api, {}) == 1
