"""The stop list's table: one item per stopped phone."""

from __future__ import annotations

from collections.abc import Sequence

from pynamodb.exceptions import DeleteError, PutError

from chalicelib.domain.stoplist import StopEntry
from chalicelib.ports import AlreadyStopped, Page
from chalicelib.storage.models import StopEntryModel
from chalicelib.storage.pagination import KeySchema, decode_cursor, key_from, take_page

CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailedException"
TABLE_KEY: KeySchema = {"phone": "S"}


def _refused(error: PutError | DeleteError) -> bool:
    return error.cause_response_code == CONDITIONAL_CHECK_FAILED


def _entry(item: StopEntryModel) -> StopEntry:
    return StopEntry(phone=item.phone, reason=item.reason, created_at=item.created_at)


class DynamoStopList:
    """The stoplist table behind ``StopList`` (``chalicelib/ports.py``)."""

    def add(self, entry: StopEntry) -> None:
        item = StopEntryModel(entry.phone, reason=entry.reason, created_at=entry.created_at)
        try:
            item.save(condition=StopEntryModel.phone.does_not_exist())
        except PutError as error:
            if _refused(error):
                raise AlreadyStopped from None
            raise

    def remove(self, phone: str) -> bool:
        try:
            StopEntryModel(phone).delete(condition=StopEntryModel.phone.exists())
        except DeleteError as error:
            if _refused(error):
                return False
            raise
        return True

    def page(self, *, limit: int, cursor: str | None) -> Page[StopEntry]:
        # Listing the whole list is the point, so a paged scan is the right tool.
        results = StopEntryModel.scan(
            last_evaluated_key=decode_cursor(cursor, TABLE_KEY), limit=limit + 1
        )
        items, next_cursor = take_page(results, limit, lambda e: key_from(e, TABLE_KEY))
        return Page([_entry(item) for item in items], next_cursor)

    def stopped(self, phones: Sequence[str]) -> set[str]:
        """One BatchGetItem per 100 phones (PynamoDB splits them and asks again for any
        unprocessed keys), reading the key alone."""
        unique = sorted(set(phones))
        if not unique:
            return set()
        found = StopEntryModel.batch_get(unique, consistent_read=True, attributes_to_get=["phone"])
        return {item.phone for item in found}
