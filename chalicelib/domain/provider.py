"""How the external send API's answers are judged (SPEC: the provider)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Outcome(enum.StrEnum):
    SENT = "sent"
    RETRY = "retry"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class ProviderResult:
    outcome: Outcome
    status: int | None  # HTTP status, None when no answer came
    detail: str  # short, safe to log and to store as last_error
    latency_ms: float | None = None


# 401/403 are retryable: a rotated or briefly wrong token must not fail a mailing.
RETRYABLE_STATUSES = frozenset({401, 403, 408, 425, 429})


def judge(status: int, body: Any) -> ProviderResult:
    """Success is exactly HTTP 200 with ``{"code": 0, "message": "OK"}``."""
    if status == 200:
        code = body.get("code") if isinstance(body, dict) else None
        if type(code) is int and code == 0 and body.get("message") == "OK":
            return ProviderResult(Outcome.SENT, status, "OK")
        return ProviderResult(Outcome.RETRY, status, "HTTP 200 with an unexpected body")
    if status >= 500 or status in RETRYABLE_STATUSES:
        return ProviderResult(Outcome.RETRY, status, f"HTTP {status}")
    if 400 <= status < 500:
        return ProviderResult(Outcome.PERMANENT, status, f"HTTP {status}")
    return ProviderResult(Outcome.RETRY, status, f"unexpected HTTP {status}")
