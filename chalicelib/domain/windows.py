"""Send windows in each client's local time (SPEC rule 7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

from chalicelib.domain.tasks import SendWindow


def is_open(window: SendWindow, local: datetime) -> bool:
    """Inside ``[start, end)`` of local wall-clock time; ``start > end`` crosses midnight."""
    now = local.time().replace(tzinfo=None)
    if window.start < window.end:
        return window.start <= now < window.end
    return now >= window.start or now < window.end


def next_opening(window: SendWindow, zone: tzinfo, now: datetime) -> datetime | None:
    """When the window next opens for a client in ``zone``, in UTC; None if open now.

    Wall-clock arithmetic in the client's zone, so daylight-saving days are honoured:
    09:00 local is 09:00 local whether that day has 23, 24 or 25 hours.
    """
    local = now.astimezone(zone)
    if is_open(window, local):
        return None
    for days in range(3):
        day = (local + timedelta(days=days)).date()
        naive = datetime.combine(day, window.start)
        # Round-trip through UTC settles a wall time that a DST gap skips over.
        opening = naive.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)
        if opening > local:
            return opening.astimezone(UTC)
    raise AssertionError("a daily window opens within two days")
