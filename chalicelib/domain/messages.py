"""Rules of a message: its id, its statuses, and the retry policy."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from datetime import datetime

# A message id is task_id * 10**10 + client_id: the same on every attempt for the same
# task and client (the provider de-duplicates on it), readable by a person, and below
# 2**63 while task ids stay under 922,337,203 and client ids under 10**10.
CLIENT_ID_SPAN = 10**10
MAX_MESSAGE_ID = 2**63 - 1


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
    value = task_id * CLIENT_ID_SPAN + client_id
    if value > MAX_MESSAGE_ID:
        raise ValueError(f"task id {task_id} does not fit a message id")
    return value


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
