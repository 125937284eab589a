"""Rules of a message: its id, its statuses, and the retry policy."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from datetime import datetime

# A message id is task_id * 10**10 + client_id: the same on every attempt for the same
# task and client (the provider de-duplicates on it), readable by a person, and below
# TEST_SEND_BASE while task ids stay under 900,000,000 and client ids under 10**10.
# The ids from TEST_SEND_BASE + 1 up to 2**63 - 1 are the test sends' (POST
# /api/tasks/{id}/test): test send n (a counter of the stage, never reused) is
# TEST_SEND_BASE + n, so it can never equal a message's id, nor another test send's
# (README, "Test sends"; docs/integration.md, section 9).
CLIENT_ID_SPAN = 10**10
MAX_MESSAGE_ID = 2**63 - 1
TEST_SEND_BASE = 9 * 10**18
MAX_TASK_ID = TEST_SEND_BASE // CLIENT_ID_SPAN - 1  # 899,999,999


class MessageStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"  # its task was cancelled before it was sent
    SUPPRESSED = "suppressed"  # its phone was on the stop list when its turn came


@dataclass(frozen=True)
class Message:
    """A message as the statistics show it."""

    id: int
    client_id: int
    status: MessageStatus
    created_at: datetime
    sent_at: datetime | None  # when the provider accepted it
    attempts: int
    last_error: str | None


def message_id(task_id: int, client_id: int) -> int:
    if not 0 < client_id < CLIENT_ID_SPAN:
        raise ValueError(f"client id {client_id} does not fit a message id")
    if not 0 < task_id <= MAX_TASK_ID:
        raise ValueError(f"task id {task_id} does not fit a message id")
    return task_id * CLIENT_ID_SPAN + client_id


def message_id_of_test_send(number: int) -> int:
    """The msgId of the ``number``-th test send of the stage (1, 2, 3...)."""
    if not 0 < number <= MAX_MESSAGE_ID - TEST_SEND_BASE:
        raise ValueError(f"test send {number} does not fit a message id")
    return TEST_SEND_BASE + number


def is_test_send_id(value: int) -> bool:
    """Whether ``value`` is in the test sends' range (no message's id ever is)."""
    return TEST_SEND_BASE < value <= MAX_MESSAGE_ID


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded in attempts and in delay."""

    max_attempts: int
    base_seconds: float
    cap_seconds: float

    def gives_up_after(self, attempt: int) -> bool:
        return attempt >= self.max_attempts

    def delay_seconds(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before attempt ``attempt + 1``: uniform in [base, min(cap, base * 2**n)]."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2.0 ** max(attempt - 1, 0))
        draw: float = (rng or _JITTER).uniform(0.0, 1.0)
        return max(self.base_seconds, ceiling * draw)


_JITTER = random.Random()  # noqa: S311 - backoff jitter, not cryptography
