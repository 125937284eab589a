"""A task's audience, read one DynamoDB page at a time for the fan-out; its exact counts
(``chalicelib/domain/audience.py``) and a sample, for the preview."""

from __future__ import annotations

from collections.abc import Sequence

from chalicelib.domain.audience import CountKey, tally
from chalicelib.domain.clients import Client, ClientProfile
from chalicelib.domain.fanout import Segment
from chalicelib.ports import AudiencePart, Recipient
from chalicelib.storage.clients import COUNTER_PREFIX, client_of, counter_name
from chalicelib.storage.models import ClientModel, CounterModel, tag_key
from chalicelib.storage.pagination import KeySchema, decode_cursor, encode_cursor

ALL_KEY: KeySchema = {"id": "N"}
CODE_KEY: KeySchema = {"id": "N", "code": "S"}
TAG_KEY: KeySchema = {"id": "N", "tag_key": "S"}
CLIENT_IDS = "clients"  # the id sequence's name (chalicelib/storage/clients.py)
# The preview's sample: every id, at most this many pages read, and pages of this many
# clients where a tag filter may drop most of them (a code's partition, tags listed).
MAX_ID = 2**63 - 1
EVERY_ID = Segment(index=0, part=0, rank=0, ranks=1, lo=1, hi=MAX_ID, max_id=MAX_ID)
SAMPLE_REQUESTS = 10
SAMPLE_FILTERED_PAGE = 100


class DynamoAudience:
    """The clients table behind the engine's ``Audience`` and the preview's
    ``AudienceCounts`` (``chalicelib/ports.py``)."""

    def max_client_id(self) -> int:
        """The clients' id sequence (``chalicelib/storage/ids.py``): every client has an
        id at most this."""
        try:
            return int(CounterModel.get(CLIENT_IDS, consistent_read=True).value or 0)
        except CounterModel.DoesNotExist:
            return 0

    def page(
        self,
        part: AudiencePart,
        segment: Segment,
        cursor: str | None,
        tags: Sequence[str],
        size: int,
    ) -> tuple[list[Recipient], str | None]:
        """Exactly one DynamoDB page is read, so a rare tag inside a large code partition
        costs a bounded amount of work per call instead of a walk of the whole partition.
        A code's or a tag's segment is a range of the index's sort key (the client id);
        everyone's is one segment of a parallel scan, less the ids above the plan's."""
        clients, after = self._raw_page(part, segment, cursor, tags, size)
        recipients = [Recipient(int(c.id), str(c.phone), str(c.utc)) for c in clients]
        return recipients, after

    def counts(self, keys: Sequence[CountKey]) -> dict[CountKey, int]:
        """The counters' values, read consistently: one BatchGetItem per 100 counters
        (PynamoDB splits them and asks again for unprocessed keys)."""
        by_name = {counter_name(key): key for key in keys}
        if not by_name:
            return {}
        found = CounterModel.batch_get(
            list(by_name), consistent_read=True, attributes_to_get=["name", "value"]
        )
        return {by_name[item.name]: int(item.value or 0) for item in found}

    def sample(
        self,
        parts: Sequence[AudiencePart],
        codes: Sequence[str],
        tags: Sequence[str],
        size: int,
    ) -> list[Client]:
        """The first ``size`` clients of ``parts`` in order (a code's keeping ``tags``, a
        tag's keeping ``codes``), read by the fan-out's own queries over every id, at most
        ``SAMPLE_REQUESTS`` pages in all: rare matches in a large partition cost a bounded
        read, and the sample may come out short."""
        found: list[Client] = []
        requests = 0
        for part in parts:
            cursor: str | None = None
            while len(found) < size and requests < SAMPLE_REQUESTS:
                wanted = size - len(found)
                filtered = (tags and part.kind == "code") or (codes and part.kind == "tag")
                page_size = max(wanted, SAMPLE_FILTERED_PAGE) if filtered else wanted
                clients, cursor = self._raw_page(
                    part, EVERY_ID, cursor, tags, page_size, codes=codes
                )
                requests += 1
                found += [client_of(c) for c in clients[:wanted]]
                if cursor is None:
                    break
        return found

    def _raw_page(
        self,
        part: AudiencePart,
        segment: Segment,
        cursor: str | None,
        tags: Sequence[str],
        size: int,
        *,
        codes: Sequence[str] = (),
    ) -> tuple[list[ClientModel], str | None]:
        ids = (segment.lo, segment.hi)
        if part.kind != "all" and segment.lo > segment.hi:
            return [], None  # an empty range (fewer ids than ranges)
        if part.kind == "code":
            keys = [tag_key(tag) for tag in tags]
            condition = ClientModel.tag_key.is_in(*keys) if keys else None
            schema = CODE_KEY
            results = ClientModel.by_code.query(
                part.value,
                ClientModel.id.between(*ids),
                filter_condition=condition,
                last_evaluated_key=decode_cursor(cursor, schema),
                page_size=size,
            )
        elif part.kind == "tag":
            schema = TAG_KEY
            results = ClientModel.by_tag.query(
                tag_key(part.value or ""),
                ClientModel.id.between(*ids),
                filter_condition=ClientModel.code.is_in(*codes) if codes else None,
                last_evaluated_key=decode_cursor(cursor, schema),
                page_size=size,
            )
        else:
            # Everyone is the audience: walking the whole table is the point.
            schema = ALL_KEY
            results = ClientModel.scan(
                ClientModel.id <= segment.max_id,
                segment=segment.rank,
                total_segments=segment.ranks,
                last_evaluated_key=decode_cursor(cursor, schema),
                page_size=size,
            )
        raw_page = next(results.page_iter, None) or {}
        clients = [ClientModel.from_raw_data(item) for item in raw_page.get("Items", [])]
        after = results.page_iter.last_evaluated_key
        return clients, encode_cursor(after) if after else None


# --- the rebuild (tools/recount_audience.py) and bulk loads ---------------------------

# Written by a rebuild: the counters are known to hold every client (see ``counted``).
COUNTED_MARKER = "audience-counted"


def counted() -> bool:
    """A rebuild has run in this stage: counters kept since hold every client."""
    try:
        CounterModel.get(COUNTED_MARKER, consistent_read=True)
    except CounterModel.DoesNotExist:
        return False
    return True


def recount(now_ms: int) -> dict[CountKey, int]:
    """Set every audience counter from a scan of the clients (a one-off: the clients
    created before the counters existed), zero the counters no client is in any more,
    and mark the stage counted. Client writes meanwhile would be counted wrongly: run it
    while none happen. Returns the counts written."""
    profiles = (
        ClientProfile(phone="", code=item.code, tag=item.tag, utc="")
        for item in ClientModel.scan(attributes_to_get=["code", "tag"])
    )
    counts = tally(profiles)
    names = {counter_name(key): n for key, n in counts.items()}
    stale = [
        item.name
        for item in CounterModel.scan(
            CounterModel.name.startswith(COUNTER_PREFIX), attributes_to_get=["name"]
        )
        if item.name not in names
    ]
    with CounterModel.batch_write() as batch:
        for name, value in [*names.items(), *((name, 0) for name in stale)]:
            batch.save(CounterModel(name, value=value))
    CounterModel(COUNTED_MARKER, value=now_ms).save()
    return counts


def add_counts(counts: dict[CountKey, int]) -> None:
    """Add to the counters (clients loaded in bulk outside the API, as the benchmarks do)."""
    for key, n in counts.items():
        CounterModel(counter_name(key)).update(actions=[CounterModel.value.add(n)])
