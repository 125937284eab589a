"""Send rate limits (``chalicelib/domain/ratelimit.py``) behind the engine's
``RateLimiter`` (``chalicelib/ports.py``): each scope's TAT is one item
``rate#<scope key>`` of the counters table (``RateModel``), shared by every sender.

A scope's reservation is one conditional ``UpdateItem`` in the common case, which
returns the TAT it wrote:

- the scope is busy (its TAT at or after ``now``): ``SET tat_us = tat_us + :inc`` if
  ``tat_us BETWEEN :now AND :limit``, where ``:limit`` is the latest TAT from which the
  ``k`` calls planned still lie before ``now + H``; the slots start at the TAT it
  found (the value written less ``:inc``);
- the scope is idle (its TAT before ``now``, or never used): ``SET tat_us = :now +
  :inc`` if ``attribute_not_exists(tat_us) OR tat_us < :now``; the slots start at
  ``now``.

Which of the two to send is guessed from the TAT this process last wrote or read for
the scope. A TAT only ever moves forward, so that value is a lower bound of the stored
one: when even it leaves no room before ``now + H``, the answer (none, and when to ask
again) needs no request at all. A refused write (another sender moved the TAT, or the
guess was wrong) reads the item, consistently, and plans again from what it holds:
fewer calls, the other write, or none and ``retry_at``. At most ``ATTEMPTS`` writes a
scope; a reservation that keeps losing races answers "none, ask again in a moment"
rather than looping. No scan, no query.

Requests per scope: 1 (the guess was right), 0 (known full), 2 (a refused write, then
none fit), 3 (a refused write, a read, a write); measured by ``bench/rate_limit.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pynamodb.exceptions import DoesNotExist, UpdateError

from chalicelib import logs
from chalicelib.domain.ratelimit import (
    RateScope,
    Reservation,
    ScopeGrant,
    grant,
    offset,
    reserve,
    to_us,
)
from chalicelib.storage.models import RateModel
from chalicelib.storage.tasks import CONDITION_FAILED

log = logs.get_logger("storage.ratelimit")

ATTEMPTS = 3  # conditional writes a scope, each after the read that a refusal costs
RACE_PAUSE_US = 1_000  # when every attempt lost a race: ask again this much later


def rate_name(key: str) -> str:
    return f"rate#{key}"


class DynamoRateLimiter:
    def __init__(self, horizon: timedelta) -> None:
        self.horizon = horizon
        self._horizon_us = horizon // timedelta(microseconds=1)
        if self._horizon_us <= 0:
            raise ValueError("the rate limits' horizon must be positive")
        # Each scope's TAT as this process last wrote or read it: a hint, never ahead
        # of the stored one (see the module's doc).
        self._seen: dict[str, int] = {}

    def reserve(self, scopes: Sequence[RateScope], count: int, now: datetime) -> Reservation:
        now_us = to_us(now)
        return reserve(scopes, count, now_us, lambda scope, n: self._take(scope, n, now_us))

    def _take(self, scope: RateScope, count: int, now_us: int) -> ScopeGrant:
        rate, horizon = scope.per_second, self._horizon_us
        known = self._seen.get(scope.key)
        for _ in range(ATTEMPTS):
            plan = grant(known, rate, count, now_us, horizon)
            k = len(plan.slots_us)
            if k == 0:
                return plan  # the stored TAT is at least ``known``: no room either
            if known is None or known < now_us:
                written = self._write(
                    scope.key,
                    RateModel.tat_us.set(now_us + offset(k, rate)),
                    RateModel.tat_us.does_not_exist() | (RateModel.tat_us < now_us),
                )
            else:
                limit = now_us + horizon - 1 - offset(k - 1, rate)
                written = self._write(
                    scope.key,
                    RateModel.tat_us.set(RateModel.tat_us + offset(k, rate)),
                    RateModel.tat_us.between(now_us, limit),
                )
            if written is not None:
                self._seen[scope.key] = written
                if known is None or known < now_us:
                    return plan
                # The TAT found was at least ``known`` and left room for the k planned.
                found = grant(written - offset(k, rate), rate, count, now_us, horizon)
                assert found.tat_us == written, (found, written)
                return found
            known = self._read(scope.key)
        plan = grant(known, rate, count, now_us, horizon)
        if not plan.slots_us:
            return plan
        log.info("rate limit write lost every race", extra={"scope": scope.key})
        return ScopeGrant((), plan.tat_us, now_us + RACE_PAUSE_US)

    def _write(self, key: str, action: Any, condition: Any) -> int | None:
        """The TAT written, or None if the condition refused it."""
        item = RateModel(rate_name(key))
        try:
            item.update(actions=[action], condition=condition)
        except UpdateError as error:
            if error.cause_response_code == CONDITION_FAILED:
                return None
            raise
        return int(item.tat_us)

    def _read(self, key: str) -> int | None:
        try:
            item = RateModel.get(rate_name(key), consistent_read=True)
        except DoesNotExist:
            self._seen.pop(key, None)
            return None
        tat = None if item.tat_us is None else int(item.tat_us)
        if tat is None:
            self._seen.pop(key, None)
        else:
            self._seen[key] = tat
        return tat
