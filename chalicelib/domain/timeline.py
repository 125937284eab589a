"""Sends over time: how many of a task's messages reached each final status, per bucket.

Pure rules, no I/O. The counts come from the same stream records as the task's counts
(``chalicelib/domain/counting.py``): a record that moves a message to a final status
counts once, in the minute of its ``ApproximateCreationDateTime`` (when DynamoDB wrote
the change). So, once the stream has caught up, a status summed over the timeline is the
task's count of that status in the stats, as long as the messages are kept (a message
removed later leaves its minute as it was: the timeline is the history of the changes).

Storage keeps minutes, grouped in one item per task, counter slot and UTC hour
(``HOUR_MINUTES`` minutes, five statuses: at most 300 small numbers, about 1.5 KB, so a
write of it costs one or two write units however long the campaign); a counter slot's
item lists the UTC days it has hours in, which is how a read finds them without a scan.
An answer regroups the minutes into buckets of ``BUCKETS`` seconds, aligned on the UTC
epoch (a day bucket starts at 00:00 UTC).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from chalicelib.domain.counting import StatusChange
from chalicelib.domain.messages import MessageStatus

# The statuses a point counts, in the order an answer lists them.
FINAL_STATUSES: tuple[str, ...] = tuple(
    status.value for status in MessageStatus if status is not MessageStatus.PENDING
)
BUCKETS: tuple[int, ...] = (60, 300, 900, 3600, 86400)
BUCKET_RULE = f"one of {', '.join(map(str, BUCKETS))}"
# The default bucket is the smallest giving at most this many points.
DEFAULT_MAX_POINTS = 500
# An answer holds at most this many points (about 90 bytes each: well under Lambda's
# 6 MB answer): a bucket too small for the task's span is refused, naming a fitting one.
MAX_POINTS = 50_000
MINUTE_SECONDS = 60
HOUR_MINUTES = 60
DAY_MINUTES = 24 * HOUR_MINUTES

# Minute counts: {epoch minute: {final status: n}}.
MinuteCounts = dict[int, Counter[str]]


@dataclass(frozen=True)
class Point:
    """One bucket: its start (epoch seconds) and its counts by final status."""

    at: int
    counts: Mapping[str, int]


def reached(change: StatusChange) -> str | None:
    """The final status a change moved its message to, or None (a creation, a claim, a
    removal, or a status kept)."""
    if change.after in FINAL_STATUSES and change.before != change.after:
        return change.after
    return None


def minute_of(epoch_seconds: float) -> int:
    return int(epoch_seconds // MINUTE_SECONDS)


def minute_counts(changes: Iterable[StatusChange]) -> MinuteCounts:
    """How the changes move the minute counts (only those reaching a final status)."""
    counts: MinuteCounts = {}
    for change in changes:
        status = reached(change)
        if status is not None:
            if change.at is None:
                raise ValueError("a change to a final status without its time")
            counts.setdefault(minute_of(change.at), Counter())[status] += 1
    return counts


def hour_of(minute: int) -> int:
    return minute // HOUR_MINUTES


def day_of_hour(hour: int) -> int:
    return hour * HOUR_MINUTES // DAY_MINUTES


def hours_of_day(day: int) -> range:
    per_day = DAY_MINUTES // HOUR_MINUTES
    return range(day * per_day, (day + 1) * per_day)


def hours_touched(changes: Iterable[StatusChange]) -> list[int]:
    """The hour items the changes write to, in the order first met."""
    return list(dict.fromkeys(hour_of(minute) for minute in minute_counts(changes)))


def within_hours(changes: list[StatusChange], limit: int) -> list[StatusChange]:
    """The longest prefix of ``changes`` whose final statuses fall in at most ``limit``
    hours: one write (a transaction has at most 100 items) counts it and moves the mark
    to its end; the rest is counted by the next write."""
    seen: set[int] = set()
    for index, change in enumerate(changes):
        if reached(change) is not None and change.at is not None:
            seen.add(hour_of(minute_of(change.at)))
            if len(seen) > limit:
                return changes[:index]
    return changes


def default_bucket(minutes: Iterable[int]) -> int:
    """The smallest bucket giving at most ``DEFAULT_MAX_POINTS`` points (the largest if
    none does)."""
    found = list(minutes)
    if not found:
        return BUCKETS[0]
    for bucket in BUCKETS:
        if point_count(min(found), max(found), bucket) <= DEFAULT_MAX_POINTS:
            return bucket
    return BUCKETS[-1]


def point_count(first_minute: int, last_minute: int, bucket: int) -> int:
    """Points from the bucket of the first minute to the bucket of the last, inclusive."""
    first = first_minute * MINUTE_SECONDS // bucket
    last = last_minute * MINUTE_SECONDS // bucket
    return last - first + 1


def smallest_fitting_bucket(minutes: Iterable[int]) -> int | None:
    """The smallest bucket within ``MAX_POINTS`` points (None: even a day is too small)."""
    found = list(minutes)
    if not found:
        return BUCKETS[0]
    for bucket in BUCKETS:
        if point_count(min(found), max(found), bucket) <= MAX_POINTS:
            return bucket
    return None


def points(minutes: Mapping[int, Mapping[str, int]], bucket: int) -> list[Point]:
    """The buckets from the first with a count to the last, zero-filled between."""
    sums: dict[int, Counter[str]] = {}
    for minute, counts in minutes.items():
        if any(counts.get(status, 0) for status in FINAL_STATUSES):
            start = minute * MINUTE_SECONDS // bucket * bucket
            sums.setdefault(start, Counter()).update(counts)
    if not sums:
        return []
    return [
        Point(at, {status: sums.get(at, Counter())[status] for status in FINAL_STATUSES})
        for at in range(min(sums), max(sums) + bucket, bucket)
    ]
