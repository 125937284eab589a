"""The timeline's minute counts (``chalicelib/domain/timeline.py``): items of the counters
table, one per task, counter slot and UTC hour, named ``timeline#<task>#<slot>#<hour>``
(the hour since the epoch).

An hour item holds one number per status and minute that has a count, named by a letter
of the status and the minute in the hour (``s7``: sent in minute 7), a top-level number so
that ``ADD`` creates it (DynamoDB adds only to top-level attributes). The counting write
(``DynamoCountLedger``, ``chalicelib/storage/messages.py``) moves them in one transaction
with its counter item, which also lists the UTC days its hours fall in (``timeline_days``):
a read takes the task's counter items, then the 24 hours of each listed day, by key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from pynamodb.exceptions import UpdateError
from pynamodb.expressions.operand import Path
from pynamodb.expressions.update import Action

from chalicelib.domain.timeline import (
    HOUR_MINUTES,
    MinuteCounts,
    day_of_hour,
    hour_of,
    hours_of_day,
)
from chalicelib.storage.models import (
    COUNTER_SLOTS,
    CounterModel,
    TimelineHourModel,
    counter_name,
)

__all__ = ["DynamoTimelines", "days_of", "hour_actions", "hour_name", "stored_minutes"]

# One letter a final status (tests/unit/test_timeline.py checks every one has its own).
CODES: dict[str, str] = {
    "sent": "s",
    "failed": "f",
    "expired": "e",
    "cancelled": "c",
    "suppressed": "u",
}
STATUS_OF_CODE = {code: status for status, code in CODES.items()}
# BatchGetItem takes at most 100 keys a request.
BATCH_KEYS = 100


def hour_name(task_id: int, slot: int, hour: int) -> str:
    return f"timeline#{task_id}#{slot}#{hour}"


def hour_actions(minutes: MinuteCounts) -> dict[int, list[Action]]:
    """Per hour item, the ``ADD`` of each of its minute counts."""
    actions: dict[int, list[Action]] = {}
    for minute, counts in sorted(minutes.items()):
        for status, n in sorted(counts.items()):
            name = f"{CODES[status]}{minute % HOUR_MINUTES}"
            actions.setdefault(hour_of(minute), []).append(Path(name).add(n))
    return actions


def days_of(hours: Iterable[int]) -> set[int]:
    return {day_of_hour(hour) for hour in hours}


def timeline_keys(task_id: int) -> dict[int, list[int]]:
    """Per counter slot of the task, the UTC days it has hour items in."""
    found: dict[int, list[int]] = {}
    names = [counter_name(task_id, slot) for slot in range(COUNTER_SLOTS)]
    for item in CounterModel.batch_get(
        names, consistent_read=True, attributes_to_get=["name", "timeline_days"]
    ):
        if item.timeline_days:
            slot = int(item.name.split("#")[2])
            found[slot] = sorted(int(day) for day in item.timeline_days)
    return found


def _raw_items(names: list[str]) -> list[dict[str, Any]]:
    """The hour items among ``names`` (strongly consistent, like the counts), as stored."""
    connection = TimelineHourModel._get_connection()
    table = TimelineHourModel.Meta.table_name
    items: list[dict[str, Any]] = []
    for start in range(0, len(names), BATCH_KEYS):
        keys: list[Any] = [{"name": {"S": name}} for name in names[start : start + BATCH_KEYS]]
        while keys:
            answer = connection.batch_get_item(keys, consistent_read=True)
            items += answer.get("Responses", {}).get(table, [])
            keys = answer.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
    return items


def _minutes_of(item: Mapping[str, Any]) -> MinuteCounts:
    hour = int(str(item["name"]["S"]).rsplit("#", 1)[1])
    found: MinuteCounts = {}
    for attribute, value in item.items():
        status = STATUS_OF_CODE.get(attribute[:1])
        if status is None or not attribute[1:].isdigit() or "N" not in value:
            continue  # the key
        minute = hour * HOUR_MINUTES + int(attribute[1:])
        found.setdefault(minute, Counter())[status] += int(value["N"])
    return found


def stored_minutes(task_id: int) -> MinuteCounts:
    """The task's minute counts, all slots added up: its counter items and the hours of
    the days they list, read by key (the cost follows the task's span, not its size)."""
    names = [
        hour_name(task_id, slot, hour)
        for slot, days in timeline_keys(task_id).items()
        for day in days
        for hour in hours_of_day(day)
    ]
    total: MinuteCounts = {}
    for item in _raw_items(names):
        for minute, counts in _minutes_of(item).items():
            total.setdefault(minute, Counter()).update(counts)
    return total


class DynamoTimelines:
    """The hour items behind ``Timelines`` (``chalicelib/ports.py``)."""

    def minutes(self, task_id: int) -> MinuteCounts:
        return stored_minutes(task_id)

    def remove(self, task_id: int, max_days: int) -> int:
        """Delete the hour items of up to ``max_days`` listed (slot, day) pairs, then take
        those days off their slot's list; the number of pairs removed (0: none left).
        Deleting an absent key is harmless, so an interrupted pass just runs again."""
        pairs = [(slot, day) for slot, days in timeline_keys(task_id).items() for day in days][
            :max_days
        ]
        with TimelineHourModel.batch_write() as batch:
            for slot, day in pairs:
                for hour in hours_of_day(day):
                    batch.delete(TimelineHourModel(hour_name(task_id, slot, hour)))
        for slot in {slot for slot, _ in pairs}:
            days = {day for owner, day in pairs if owner == slot}
            try:
                CounterModel(counter_name(task_id, slot)).update(
                    actions=[CounterModel.timeline_days.delete(days)],
                    condition=CounterModel.name.exists(),  # never recreate a removed item
                )
            except UpdateError as error:
                if error.cause_response_code != "ConditionalCheckFailedException":
                    raise
        return len(pairs)
