"""The stop list: phones that must never get a message, whether or not they are clients.

An entry outlives the client that had the phone (deleting a client keeps it): the list
is about the person at the number, not about the directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# Why a phone was stopped, for the operator reading the list (a complaint, a ticket id).
REASON_MAX = 500
# What removing a phone that is not on the list answers (a path that is no phone too).
NOT_ON_THE_LIST = "This phone is not on the stop list."


@dataclass(frozen=True)
class StopEntry:
    phone: str
    reason: str | None
    created_at: datetime
