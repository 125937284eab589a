"""Rules of a test send (``POST /api/tasks/{id}/test``): a task's text sent now to a few
phones, outside its mailing (README, "Test sends")."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

# Phones a request may name (SPEC, "Campaign controls").
MAX_PHONES = 5
STOPPED = "the phone is on the stop list"
NO_TOKEN = "the provider's token could not be read"  # noqa: S105 - a message, no secret
INTERNAL = "the call could not be made"


class TestSendStatus(enum.StrEnum):
    __test__ = False  # not a pytest test class

    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"


@dataclass(frozen=True)
class TestSendResult:
    """What became of one phone: ``error`` says why it was not sent (None when sent);
    ``message_id`` is the msgId the provider got (None when it got none)."""

    __test__ = False

    phone: str
    status: TestSendStatus
    error: str | None
    message_id: int | None = None
    attempts: int = 0


def distinct(phones: Iterable[str]) -> list[str]:
    """Each phone once, in the order first named: a phone named twice gets one send."""
    return list(dict.fromkeys(phones))


def retry_fits(elapsed_s: float, call_s: float, budget_s: float) -> bool:
    """Whether one more call, which may take ``call_s`` (the provider's connect and read
    timeouts), still ends within ``budget_s`` of the request's start."""
    return elapsed_s + call_s <= budget_s
