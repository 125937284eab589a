"""A task's audience, read one DynamoDB page at a time for the fan-out."""

from __future__ import annotations

from collections.abc import Sequence

from chalicelib.domain.fanout import Segment
from chalicelib.ports import AudiencePart, Recipient
from chalicelib.storage.models import ClientModel, CounterModel, tag_key
from chalicelib.storage.pagination import KeySchema, decode_cursor, encode_cursor

ALL_KEY: KeySchema = {"id": "N"}
CODE_KEY: KeySchema = {"id": "N", "code": "S"}
TAG_KEY: KeySchema = {"id": "N", "tag_key": "S"}
CLIENT_IDS = "clients"  # the id sequence's name (chalicelib/storage/clients.py)


class DynamoAudience:
    """The clients table behind the engine's ``Audience`` (``chalicelib/ports.py``)."""

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
        recipients = [Recipient(int(c.id), str(c.phone), str(c.utc)) for c in clients]
        return recipients, encode_cursor(after) if after else None
