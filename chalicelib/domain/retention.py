"""How long a mailing's data is kept: the DynamoDB TTL stamps (``expires_at``).

Pure rules, no I/O. DynamoDB removes an item some time (usually within two days) after
its ``expires_at`` (epoch seconds) has passed, without a write unit of ours, so each
stamp rides on a write the service makes anyway: a message is stamped when it is
created and again by every later write of it (each writer knows its task's end); a
task when it finishes or is deleted. Why keep data only so long: storage cost, and the
phone numbers a message holds are personal data (README, "Data retention").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# A deleted task's tombstone is kept this long: senders and fan-outs read a missing task
# as a deleted one, so it only has to outlive the dispatcher's removal of its messages.
DELETED_TASK_GRACE = timedelta(days=1)


@dataclass(frozen=True)
class Retention:
    """``keep``: how long after its task is done a message (and the task) stays;
    ``lease``: how long after its task's end a message may still be pending (a claim
    held at the end is waited for before the sweep expires it)."""

    keep: timedelta
    lease: timedelta

    def message_expiry(self, end: datetime) -> datetime:
        """Every message is final by its task's end plus a lease: keep it from then."""
        return end + self.lease + self.keep

    def finished_task_expiry(self, end: datetime, finished_at: datetime) -> datetime:
        """A finished task outlives its messages: kept from its finish, or from when its
        last message could have become final, whichever is later."""
        return max(finished_at, end + self.lease) + self.keep


def deleted_task_expiry(deleted_at: datetime) -> datetime:
    return deleted_at + DELETED_TASK_GRACE
