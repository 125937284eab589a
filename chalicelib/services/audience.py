"""The audience preview (issue 18): how many clients a filter matches now, and some of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chalicelib import logs
from chalicelib.domain.audience import count_of, filter_keys
from chalicelib.domain.clients import Client
from chalicelib.ports import AudienceCounts, audience_parts

log = logs.get_logger("audience")

SAMPLE_SIZE = 10


@dataclass(frozen=True)
class Preview:
    count: int
    sample: list[Client]


class AudienceService:
    def __init__(self, audience: AudienceCounts) -> None:
        self._audience = audience

    def preview(self, codes: Sequence[str], tags: Sequence[str]) -> Preview:
        """The exact count from the audience counters, then a sample from the parts that
        have anyone (nothing is read for an empty audience)."""
        keys = filter_keys(codes, tags)
        values = self._audience.counts(keys)
        count = count_of(keys, values)
        populated = {key.code if codes else key.tag for key in keys if values.get(key, 0) > 0}
        parts = [
            part
            for part in audience_parts(codes, tags)
            if part.kind == "all" or part.value in populated
        ]
        sample = self._audience.sample(parts, tags, SAMPLE_SIZE) if count else []
        log.info(
            "audience previewed",
            extra={
                "codes": len(set(codes)),
                "tags": len(set(tags)),
                "count": count,
                "sample_ids": [client.id for client in sample],
            },
        )
        return Preview(count, sample)
