"""A task's audience split into segments that fan out in parallel (issue 17).

Each audience part (a code, a tag, or everyone: ``chalicelib/ports.py``,
``audience_parts``) is cut into ``ranks`` ranges of client ids, ``1..max_id`` where
``max_id`` is the highest client id when the task started: a client added later has a
higher id and is in no segment (SPEC rule 3: the clients that match *when the task
starts*). The segments are disjoint and cover every id, so one pass of each gives every
matching client exactly once; each has its own checkpoint and lease
(``SegmentState``), so workers run them side by side and one that dies is resumed from
its last page by the next.

Pure code: the plan is a function of what the task stores (``max_id`` and ``ranks``),
so every worker computes the same segments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Segment:
    """Client ids ``lo..hi`` (inclusive) of audience part ``part``; range ``rank`` of
    ``ranks``. A parallel scan of everyone uses ``rank`` as DynamoDB's scan segment
    (whose items are spread by hash, not by id) and keeps the ids up to ``max_id``."""

    index: int
    part: int
    rank: int
    ranks: int
    lo: int
    hi: int
    max_id: int


@dataclass(frozen=True)
class SegmentState:
    """Where one segment's fan-out stands. ``owner`` holds it until ``lease_until_ms``;
    ``updated_ms`` is its last checkpoint (or its claim), for the watchdog."""

    index: int
    cursor: str | None = None
    done: bool = False
    owner: str | None = None
    lease_until_ms: int = 0
    updated_ms: int = 0

    def free(self, now_ms: int) -> bool:
        """Nobody holds it: never claimed, released, or its holder's lease lapsed."""
        return self.lease_until_ms <= now_ms


def ranks_for(max_id: int, *, clients_per_segment: int, max_ranks: int) -> int:
    """How many id ranges each part is cut into: about ``clients_per_segment`` ids each,
    at most ``max_ranks`` (the workers that can usefully run at once)."""
    wanted = math.ceil(max(max_id, 1) / max(clients_per_segment, 1))
    return max(1, min(wanted, max_ranks))


def plan(parts: int, max_id: int, ranks: int) -> list[Segment]:
    """Every segment of a task with ``parts`` audience parts: part by part, the id
    ranges in order. Together they cover ids ``1..max_id`` of every part once."""
    span = max(1, math.ceil(max(max_id, 1) / ranks))
    segments: list[Segment] = []
    for part in range(parts):
        for rank in range(ranks):
            lo = rank * span + 1
            hi = max_id if rank == ranks - 1 else min(max_id, (rank + 1) * span)
            segments.append(Segment(len(segments), part, rank, ranks, lo, hi, max_id))
    return segments
