"""The audience preview (issue 18): how many clients a filter matches now, and some of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chalicelib import logs
from chalicelib.domain.audience import CountKey, count_of, filter_keys
from chalicelib.domain.clients import Client
from chalicelib.ports import AudienceCounts, AudiencePart, audience_parts

log = logs.get_logger("audience")

SAMPLE_SIZE = 10
# Counters one BatchGetItem reads.
BATCH_KEYS = 100


@dataclass(frozen=True)
class Preview:
    count: int
    sample: list[Client]


class AudienceService:
    def __init__(self, audience: AudienceCounts) -> None:
        self._audience = audience

    def preview(self, codes: Sequence[str], tags: Sequence[str]) -> Preview:
        """The exact count from the audience counters, then a sample read from the parts
        that have anyone (nothing is read for an empty audience)."""
        if codes and tags:
            count, parts, sample_codes, sample_tags = self._codes_and_tags(codes, tags)
        else:
            keys = filter_keys(codes, tags)
            values = self._audience.counts(keys)
            count = count_of(keys, values)
            populated = {key.code if codes else key.tag for key in keys if values.get(key, 0) > 0}
            parts = [
                part
                for part in audience_parts(codes, tags)
                if part.kind == "all" or part.value in populated
            ]
            sample_codes, sample_tags = [], []
        sample = (
            self._audience.sample(parts, sample_codes, sample_tags, SAMPLE_SIZE) if count else []
        )
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

    def _codes_and_tags(
        self, codes: Sequence[str], tags: Sequence[str]
    ) -> tuple[int, list[AudiencePart], list[str], list[str]]:
        """Codes AND tags: the pairs' sum. The codes' and tags' own counters come first, in
        the same request when all fit in one: the pairs of a code or a tag nobody has are
        not read (100 codes by 100 tags are 10,000 pairs, 100 requests), and the sample
        walks the smaller side, each code's partition keeping the tags or each tag's
        keeping the codes."""
        unique_codes, unique_tags = sorted(set(codes)), sorted(set(tags))
        totals = [CountKey(c, None) for c in unique_codes] + [
            CountKey(None, t) for t in unique_tags
        ]
        pairs = filter_keys(unique_codes, unique_tags)
        if len(totals) + len(pairs) <= BATCH_KEYS:
            values = self._audience.counts(totals + pairs)
        else:
            values = self._audience.counts(totals)
            unique_codes = [c for c in unique_codes if values.get(CountKey(c, None), 0) > 0]
            unique_tags = [t for t in unique_tags if values.get(CountKey(None, t), 0) > 0]
            pairs = filter_keys(unique_codes, unique_tags) if unique_codes and unique_tags else []
            values.update(self._audience.counts(pairs) if pairs else {})
        count = count_of(pairs, values)
        found = [key for key in pairs if values.get(key, 0) > 0]
        with_codes = sorted({key.code for key in found if key.code is not None})
        with_tags = sorted({key.tag for key in found if key.tag is not None})
        by_code = sum(values.get(CountKey(c, None), 0) for c in with_codes)
        by_tag = sum(values.get(CountKey(None, t), 0) for t in with_tags)
        if by_tag < by_code:
            return count, [AudiencePart("tag", t) for t in with_tags], with_codes, []
        return count, [AudiencePart("code", c) for c in with_codes], [], with_tags
