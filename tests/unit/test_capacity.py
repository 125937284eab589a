"""Write units as DynamoDB bills them, index writes included (local/capacity.py)."""

from __future__ import annotations

from typing import Any

from local.capacity import IndexSpec, item_size, write_units

TABLE_KEYS = ("task_id", "client_id")
BY_STATUS = IndexSpec("by_task_status", ("task_id", "status"), "ALL", TABLE_KEYS)
BY_WAKE = IndexSpec("parked_by_wake", ("task_id", "wake_ms"), "ALL", TABLE_KEYS)
BY_WAKE_KEYS = IndexSpec("parked_by_wake", ("task_id", "wake_ms"), "KEYS_ONLY", TABLE_KEYS)
INDEXES = (BY_STATUS, BY_WAKE)


def message(**extra: Any) -> dict[str, dict[str, Any]]:
    item: dict[str, dict[str, Any]] = {
        "task_id": {"N": "7"},
        "client_id": {"N": "42"},
        "status": {"S": "pending"},
        "phase": {"S": "queued"},
        "job_gen": {"N": "0"},
    }
    item.update(extra)
    return item


def test_a_new_message_writes_the_table_and_the_status_index() -> None:
    assert write_units(None, message(), INDEXES) == {"table": 1, "by_task_status": 1}


def test_a_claim_adds_the_sparse_wake_key_and_rewrites_the_all_projection() -> None:
    before = message()
    after = message(phase={"S": "claimed"}, job_gen={"N": "1"}, wake_ms={"N": "1000"})
    assert write_units(before, after, INDEXES) == {
        "table": 1,
        "by_task_status": 1,  # a projected attribute changed
        "parked_by_wake": 1,  # the key appeared: a put
    }


def test_a_final_status_moves_the_status_key_and_leaves_the_sparse_index() -> None:
    before = message(phase={"S": "claimed"}, wake_ms={"N": "1000"})
    after = message(status={"S": "sent"}, phase={"S": "done"})
    assert write_units(before, after, INDEXES, transactional=True) == {
        "table": 2,  # an item of a transaction
        "by_task_status": 2,  # a key changed: a delete and a put
        "parked_by_wake": 1,  # the key went: a delete
    }


def test_a_changed_wake_time_is_a_delete_and_a_put() -> None:
    before = message(wake_ms={"N": "1000"})
    after = message(wake_ms={"N": "2000"})
    assert write_units(before, after, (BY_WAKE,)) == {"table": 1, "parked_by_wake": 2}


def test_keys_only_ignores_other_attributes_and_untouched_items_cost_the_table_only() -> None:
    before = message(wake_ms={"N": "1000"})
    after = message(wake_ms={"N": "1000"}, phase={"S": "claimed"})
    assert write_units(before, after, (BY_WAKE_KEYS,)) == {"table": 1}
    assert write_units(message(), message(), INDEXES) == {"table": 1}


def test_a_refused_write_bills_the_table_alone() -> None:
    before = message()
    assert write_units(before, before, INDEXES, applied=False) == {"table": 1}
    assert write_units(before, before, INDEXES, applied=False, transactional=True) == {"table": 2}


def test_items_over_a_kilobyte_cost_a_unit_per_kilobyte() -> None:
    big = message(last_error={"S": "x" * 1500})
    assert 1500 < item_size(big) <= 2048
    assert write_units(message(), big, ()) == {"table": 2}
    # The larger of before and after counts: trimming a big item costs as much.
    assert write_units(big, message(), ()) == {"table": 2}


def test_item_size_follows_the_developer_guide() -> None:
    # Names count, strings by their UTF-8 bytes, numbers about a byte a two digits + 1.
    assert item_size({"a": {"S": "héllo"}}) == 1 + 6
    assert item_size({"n": {"N": "12345"}}) == 1 + 4
    assert item_size({"b": {"BOOL": True}, "z": {"NULL": True}}) == 4
    assert item_size({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + 1 + 1 + 1
