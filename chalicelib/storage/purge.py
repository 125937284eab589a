"""The removal of a deleted task's messages, counts and timeline (the dispatcher's purge
pass).

A deleted task's tombstone sits in the ``purge`` shard of ``open_by_start`` (a query,
never a scan) until this is done. Each page deletes the first message keys of the
task's partition (BatchWriteItem: one write unit a message, as a TTL re-stamp would
cost, and the data is gone now rather than within TTL's day or two); deleted items no
longer come back, so a pass cut short by its budget, or repeated, just goes on.
"""

from __future__ import annotations

from pynamodb.exceptions import UpdateError

from chalicelib.domain.ratelimit import feed_key, task_key
from chalicelib.storage.messages import COUNTER_SHARDS, counter_name
from chalicelib.storage.models import (
    PURGE_SHARD,
    CounterModel,
    MessageModel,
    TaskModel,
    TaskProgressModel,
)
from chalicelib.storage.ratelimit import rate_name
from chalicelib.storage.timeline import DynamoTimelines

__all__ = ["DynamoPurge"]


class DynamoPurge:
    """The tables behind the purge's ``DeletedTaskData`` (``chalicelib/ports.py``)."""

    def deleted_tasks(self, limit: int) -> list[int]:
        found = TaskModel.open_by_start.query(PURGE_SHARD, limit=limit, attributes_to_get=["id"])
        return [int(task.id) for task in found]

    def remove_messages(self, task_id: int, limit: int) -> int:
        """Delete up to ``limit`` of the task's messages; the number deleted."""
        found = [
            (int(message.task_id), int(message.client_id))
            for message in MessageModel.query(
                task_id, limit=limit, attributes_to_get=["task_id", "client_id"]
            )
        ]
        with MessageModel.batch_write() as batch:
            for key in found:
                batch.delete(MessageModel(*key))
        return len(found)

    def remove_timeline(self, task_id: int, limit: int) -> int:
        return DynamoTimelines().remove(task_id, limit)

    def remove_counts(self, task_id: int) -> None:
        """Its counts, and its send rate limit's item (chalicelib/storage/ratelimit.py)."""
        with CounterModel.batch_write() as batch:
            for shard in range(COUNTER_SHARDS):
                batch.delete(CounterModel(counter_name(task_id, shard)))
            batch.delete(CounterModel(rate_name(task_key(task_id))))
            batch.delete(CounterModel(rate_name(feed_key(task_id))))

    def purged(self, task_id: int) -> None:
        """The tombstone leaves the purge shard; its TTL (set at the delete) removes it."""
        try:
            TaskProgressModel(task_id).update(
                actions=[TaskProgressModel.open_shard.remove()],
                condition=TaskProgressModel.open_shard == PURGE_SHARD,
            )
        except UpdateError as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise  # else: done by a concurrent pass, or the tombstone has expired
