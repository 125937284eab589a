"""RETENTION_DAYS and the TTL stamps it gives (chalicelib/domain/retention.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.domain.retention import DELETED_TASK_GRACE, Retention, deleted_task_expiry
from chalicelib.settings import Settings

END = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)


def test_retention_is_180_days_by_default() -> None:
    settings = Settings.from_env({})
    assert settings.retention_days == 180
    assert settings.retention() == Retention(keep=timedelta(days=180), lease=timedelta(seconds=60))


@pytest.mark.parametrize(("raw", "days"), [("1", 1), ("30", 30), (" 365 ", 365), ("", 180)])
def test_retention_days_reads_a_whole_number_of_days(raw: str, days: int) -> None:
    assert Settings.from_env({"RETENTION_DAYS": raw}).retention_days == days


@pytest.mark.parametrize("raw", ["0", "-5", "1.5", "abc", "180d", "36501", "1e3"])
def test_retention_days_refuses_anything_but_a_positive_whole_number(raw: str) -> None:
    with pytest.raises(ValueError, match=r"RETENTION_DAYS must be a whole number of days") as err:
        Settings.from_env({"RETENTION_DAYS": raw})
    assert repr(raw) in str(err.value)  # the error names what was given


def test_a_message_is_kept_from_its_tasks_end_plus_a_lease() -> None:
    retention = Settings.from_env({"RETENTION_DAYS": "30", "LEASE_SECONDS": "60"}).retention()
    assert retention.message_expiry(END) == END + timedelta(days=30, seconds=60)


def test_a_finished_task_outlives_its_messages() -> None:
    retention = Retention(keep=timedelta(days=30), lease=timedelta(seconds=60))
    early = END - timedelta(hours=3)  # every message final before the end
    late = END + timedelta(hours=2)  # the sweep ran late (the dispatcher was down)
    assert retention.finished_task_expiry(END, early) == retention.message_expiry(END)
    assert retention.finished_task_expiry(END, late) == late + timedelta(days=30)


def test_a_deleted_task_goes_soon() -> None:
    assert deleted_task_expiry(END) == END + DELETED_TASK_GRACE
