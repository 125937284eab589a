"""The stop list's use cases: phones that must never get a message."""

from __future__ import annotations

from chalicelib import logs
from chalicelib.clock import Clock
from chalicelib.domain.stoplist import NOT_ON_THE_LIST, StopEntry
from chalicelib.errors import Conflict, NotFound
from chalicelib.ports import AlreadyStopped, Page, StopList

log = logs.get_logger("stoplist")


class StopListService:
    def __init__(self, clock: Clock, stoplist: StopList) -> None:
        self._clock = clock
        self._stoplist = stoplist

    def add(self, phone: str, reason: str | None) -> StopEntry:
        entry = StopEntry(phone=phone, reason=reason, created_at=self._clock())
        try:
            self._stoplist.add(entry)
        except AlreadyStopped:
            raise Conflict("This phone is on the stop list already.") from None
        log.info("phone stopped", extra={"phone": logs.mask_phone(phone)})
        return entry

    def remove(self, phone: str) -> None:
        if not self._stoplist.remove(phone):
            raise NotFound(NOT_ON_THE_LIST)
        log.info("phone unstopped", extra={"phone": logs.mask_phone(phone)})

    def list(self, *, limit: int, cursor: str | None) -> Page[StopEntry]:
        return self._stoplist.page(limit=limit, cursor=cursor)
