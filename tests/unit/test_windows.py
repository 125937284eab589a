"""Send windows in the client's local time (SPEC rule 7)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from chalicelib.domain.clients import parse_utc
from chalicelib.domain.tasks import SendWindow
from chalicelib.domain.windows import is_open, next_opening

DAY = SendWindow.parse("09:00", "21:00")
NIGHT = SendWindow.parse("21:00", "09:00")  # crosses midnight


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_moscow_open_while_vladivostok_is_closed() -> None:
    now = utc("2026-11-28T08:00:00")  # 11:00 in Moscow, 18:00 in Vladivostok... both open
    assert next_opening(DAY, parse_utc("Europe/Moscow"), now) is None
    late = utc("2026-11-28T12:30:00")  # 15:30 Moscow, 22:30 Vladivostok
    assert next_opening(DAY, parse_utc("Europe/Moscow"), late) is None
    opening = next_opening(DAY, parse_utc("Asia/Vladivostok"), late)
    assert opening == utc("2026-11-28T23:00:00")  # 09:00 next day in Vladivostok (UTC+10)


@pytest.mark.parametrize(
    ("local_time", "expected_open"),
    [
        ("21:00", True),
        ("23:59", True),
        ("00:00", True),
        ("08:59", True),
        ("09:00", False),
        ("20:59", False),
    ],
)
def test_window_crossing_midnight(local_time: str, expected_open: bool) -> None:
    hour, minute = map(int, local_time.split(":"))
    local = datetime(2026, 11, 28, hour, minute, tzinfo=UTC)
    assert is_open(NIGHT, local) is expected_open


def test_midnight_window_opens_the_same_evening() -> None:
    opening = next_opening(NIGHT, UTC, utc("2026-11-28T12:00:00"))
    assert opening == utc("2026-11-28T21:00:00")


def test_window_end_is_exclusive_and_start_inclusive() -> None:
    assert next_opening(DAY, UTC, utc("2026-11-28T09:00:00")) is None
    assert next_opening(DAY, UTC, utc("2026-11-28T21:00:00")) == utc("2026-11-29T09:00:00")


def test_daylight_saving_spring_forward_in_new_york() -> None:
    york = ZoneInfo("America/New_York")
    # 2026-03-08: clocks jump from 02:00 EST to 03:00 EDT.
    before = datetime(2026, 3, 8, 5, 0, tzinfo=UTC)  # 00:00 EST
    opening = next_opening(DAY, york, before)
    assert opening == datetime(2026, 3, 8, 13, 0, tzinfo=UTC)  # 09:00 EDT (UTC-4)
    assert opening.astimezone(york).hour == 9


def test_daylight_saving_fall_back_in_new_york() -> None:
    york = ZoneInfo("America/New_York")
    # 2026-11-01: clocks go back from 02:00 EDT to 01:00 EST.
    before = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # 00:00 EDT
    opening = next_opening(DAY, york, before)
    assert opening == datetime(2026, 11, 1, 14, 0, tzinfo=UTC)  # 09:00 EST (UTC-5)


def test_window_starting_inside_a_dst_gap_opens_when_the_wall_clock_resumes() -> None:
    york = ZoneInfo("America/New_York")
    gap = SendWindow.parse("02:30", "05:00")  # 02:30 does not exist on 2026-03-08
    opening = next_opening(gap, york, datetime(2026, 3, 8, 5, 0, tzinfo=UTC))
    assert opening is not None
    assert opening.astimezone(york).hour == 3
    assert is_open(gap, opening.astimezone(york))


def test_fixed_offset_client() -> None:
    zone = parse_utc("+05:30")
    now = utc("2026-11-28T02:00:00")  # 07:30 local
    assert next_opening(DAY, zone, now) == utc("2026-11-28T03:30:00")  # 09:00 local
