"""Send rate limits (``chalicelib/domain/ratelimit.py``) behind the engine's
``RateLimiter`` (``chalicelib/ports.py``): each scope's TAT is one item
``rate#<scope key>`` of the counters table (``RateModel``), shared by every sender.

A scope's reservation is one conditional ``UpdateItem`` in the common case, which
returns the TAT it wrote:

- the scope is busy (its TAT at or after ``now``): ``SET tat_us = tat_us + :inc`` if
  ``tat_us BETWEEN :now AND :limit``, where ``:limit`` is the latest TAT from which the
  ``k`` calls planned still lie before ``now + H``; the slots start at the TAT it
  found (the value written less ``:inc``);
- the scope is idle (its TAT before ``now``, or never used): ``SET tat_us = :start`` if
  ``attribute_not_exists(tat_us) OR tat_us < :now``; the slots start at ``now``.

Which of the two to send is guessed from the TAT this process last wrote or saw for the
scope. A TAT only ever moves forward, so that value is a lower bound of the stored one:
when even it leaves no room before ``now + H``, the answer (none, and when to ask again)
needs no request at all. A refused write (another sender moved the TAT, or the guess was
wrong) comes back with the item as it was (``ReturnValuesOnConditionCheckFailure``), and
the reservation plans again from it: fewer calls, the other write, or none and
``retry_at``. A refusal without the item (the item is gone; a store that does not hand
it back) reads it, consistently, with ``GetItem``. At most ``ATTEMPTS`` writes a scope:
one that keeps losing races answers "none, ask again in a moment" rather than looping.
No scan, no query.

Requests a scope: 1 (the guess was right, or refused with no room left), 0 (known
full), 2 (refused, then the write that fits); ``bench/rate_limit.py`` measures the mix
with senders contending for one scope.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from pynamodb.exceptions import DoesNotExist

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

    def reserve(
        self, scopes: Sequence[RateScope], count: int, now: datetime, *, at_least: int = 1
    ) -> Reservation:
        now_us = to_us(now)

        def take(scope: RateScope, n: int, least: int) -> ScopeGrant:
            return self._take(scope, n, now_us, least)

        return reserve(scopes, count, now_us, take, at_least=at_least)

    def _take(self, scope: RateScope, count: int, now_us: int, at_least: int) -> ScopeGrant:
        rate, horizon = scope.per_second, self._horizon_us
        known = self._seen.get(scope.key)
        for _ in range(ATTEMPTS):
            plan = grant(known, rate, count, now_us, horizon, at_least=at_least)
            k = len(plan.slots_us)
            if k == 0:
                return plan  # the stored TAT is at least ``known``: no room either
            idle = known is None or known < now_us
            if idle:
                outcome = self._update(
                    scope.key,
                    "SET tat_us = :start",
                    "attribute_not_exists(tat_us) OR tat_us < :now",
                    {":start": now_us + offset(k, rate), ":now": now_us},
                )
            else:
                outcome = self._update(
                    scope.key,
                    "SET tat_us = tat_us + :inc",
                    "tat_us BETWEEN :now AND :limit",
                    {
                        ":inc": offset(k, rate),
                        ":now": now_us,
                        ":limit": now_us + horizon - 1 - offset(k - 1, rate),
                    },
                )
            if outcome.written is not None:
                self._seen[scope.key] = outcome.written
                if idle:
                    return plan
                # The TAT found was at least ``known`` and left room for the k planned.
                found = grant(
                    outcome.written - offset(k, rate),
                    rate,
                    count,
                    now_us,
                    horizon,
                    at_least=at_least,
                )
                assert found.tat_us == outcome.written, (found, outcome.written)
                return found
            known = outcome.found if outcome.item_returned else self._read(scope.key)
            self._remember(scope.key, known)
        plan = grant(known, rate, count, now_us, horizon, at_least=at_least)
        if not plan.slots_us:
            return plan
        log.info("rate limit write lost every race", extra={"scope": scope.key})
        return ScopeGrant((), plan.tat_us, now_us + RACE_PAUSE_US)

    def _remember(self, key: str, tat: int | None) -> None:
        if tat is None:
            self._seen.pop(key, None)
        else:
            self._seen[key] = tat

    def _update(
        self, key: str, update: str, condition: str, values: dict[str, int]
    ) -> _WriteResult:
        """One conditional ``UpdateItem`` of the scope's item. Refused, DynamoDB hands back
        the item as it was (``ReturnValuesOnConditionCheckFailure``), so a refusal needs
        no read; only a refusal without it (the item is gone, or a store that does not
        return it) costs a read."""
        connection: Any = RateModel._get_connection().connection
        try:
            answer = connection.client.update_item(
                TableName=RateModel.Meta.table_name,
                Key={"name": {"S": rate_name(key)}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues={name: {"N": str(v)} for name, v in values.items()},
                ReturnValues="UPDATED_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != CONDITION_FAILED:
                raise
            item = error.response.get("Item")
            if not item:
                return _WriteResult(None, None, item_returned=False)
            tat = item.get("tat_us", {}).get("N")
            return _WriteResult(None, None if tat is None else int(tat), item_returned=True)
        return _WriteResult(int(answer["Attributes"]["tat_us"]["N"]), None, item_returned=True)

    def _read(self, key: str) -> int | None:
        try:
            item = RateModel.get(rate_name(key), consistent_read=True)
        except DoesNotExist:
            return None
        return None if item.tat_us is None else int(item.tat_us)


@dataclass(frozen=True)
class _WriteResult:
    written: int | None  # the TAT written
    found: int | None  # refused: the TAT the item held (None: none)
    item_returned: bool
