"""Message counts from the messages table's change stream, each change counted once.

Every write of a message shows up on the table's stream as one record with the item
before and after it; a change of status (a message created, or moved from pending to a
final status) moves the counts, any other change (a claim, a wait) does not. Nor does a
removal: messages are removed only with their task (the purge of a deleted task, whose
counter items go with it and must not come back from its removals) or by retention's
TTL (the task, kept a little longer, keeps its figures, as its timeline does).
The stream delivers records at least once: a batch whose handler failed, or half of
it, comes again. So each counter item keeps, for each stream shard that wrote to it,
the sequence number of the last record it has counted (its *mark*); a batch counts only
the records after the mark, and moves the mark in the same conditional write as the
counts (conditional on the marks being as read). Within a shard, records come in order
the first time (Lambda reads a shard in order, a parent shard before its children), so
a record at or below the mark has been counted, and one above it has not.

Counts add up whichever item holds them and whatever the order, so records of one task
from several shards (a partition split) may be counted in any order; the total is a
recount of the messages once every shard has been read.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class StatusChange:
    """One stream record of a message, as far as the counts care."""

    task_id: int
    sequence: int  # the record's sequence number in its shard
    before: str | None  # status before the write; None: the message was created
    after: str | None  # status after; None: the message was removed
    # When DynamoDB made the change (the record's ApproximateCreationDateTime, epoch
    # seconds): the minute of the timeline a final status counts in.
    at: float | None = None

    @property
    def counts(self) -> bool:
        return self.after is not None and self.before != self.after


def deltas(changes: Iterable[StatusChange]) -> dict[str, int]:
    """How the counts move (``total`` and one entry per status), zeros left out."""
    moved: Counter[str] = Counter()
    for change in changes:
        if change.after is None or change.before == change.after:
            continue  # a removal, or no change of status: see ``counts``
        if change.before is None:
            moved["total"] += 1
        else:
            moved[change.before] -= 1
        moved[change.after] += 1
    return {name: n for name, n in moved.items() if n}


def not_counted(changes: Sequence[StatusChange], mark: int | None) -> list[StatusChange]:
    """The changes after the shard's mark: those this counter has not counted yet."""
    return [change for change in changes if mark is None or change.sequence > mark]


def counter_slot(shard_id: str, slots: int) -> int:
    """Which of a task's counter items a stream shard writes to (stable per shard, so
    concurrent shards of one task mostly write to different items)."""
    return zlib.crc32(shard_id.encode("utf-8")) % slots
