"""Exact audience counts without reading the audience (issue 18, the preview).

Every client is counted in four counters: its (code, tag) pair, its code, its tag, and
everyone. A client write changes them in the same transaction as the client
(``chalicelib/storage/clients.py``), so they are exact at every moment. A filter's count
is then a sum of a few counters: codes OR-ed AND tags OR-ed is the sum of the pairs'
counters (a client has one code and one tag, so no client is counted twice); only codes,
the codes' counters; only tags, the tags'; neither, everyone's.

Pure code: which counters a filter reads, and how a write moves them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from chalicelib.domain.clients import ClientProfile


@dataclass(frozen=True)
class CountKey:
    """The clients with this code (None: any code) and this tag (None: any tag)."""

    code: str | None
    tag: str | None


EVERYONE = CountKey(None, None)


def keys_of(profile: ClientProfile) -> list[CountKey]:
    """The four counters a client is counted in."""
    return [
        CountKey(profile.code, profile.tag),
        CountKey(profile.code, None),
        CountKey(None, profile.tag),
        EVERYONE,
    ]


def deltas(before: ClientProfile | None, after: ClientProfile | None) -> dict[CountKey, int]:
    """How a write moves the counters: ``before`` is the client as stored (None: created),
    ``after`` as written (None: deleted). Counters left as they are are absent, so an
    update that keeps the code and the tag writes none."""
    moved: Counter[CountKey] = Counter()
    if after is not None:
        moved.update(keys_of(after))
    if before is not None:
        moved.subtract(keys_of(before))
    return {key: n for key, n in moved.items() if n}


def filter_keys(codes: Sequence[str], tags: Sequence[str]) -> list[CountKey]:
    """The counters whose sum is the number of clients a task's filter matches.
    Repeated codes or tags are read once (a repeat matches no one more)."""
    unique_codes, unique_tags = sorted(set(codes)), sorted(set(tags))
    if unique_codes and unique_tags:
        return [CountKey(c, t) for c in unique_codes for t in unique_tags]
    if unique_codes:
        return [CountKey(c, None) for c in unique_codes]
    if unique_tags:
        return [CountKey(None, t) for t in unique_tags]
    return [EVERYONE]


def count_of(keys: Iterable[CountKey], values: dict[CountKey, int]) -> int:
    """The filter's count from the counters read (a counter never written is 0)."""
    return sum(values.get(key, 0) for key in set(keys))


def tally(profiles: Iterable[ClientProfile]) -> dict[CountKey, int]:
    """Every counter's value for these clients (the rebuild, ``tools/recount_audience.py``)."""
    counts: Counter[CountKey] = Counter()
    for profile in profiles:
        counts.update(keys_of(profile))
    return dict(counts)
