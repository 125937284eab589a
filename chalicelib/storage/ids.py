"""Service-assigned integer ids from atomic DynamoDB counters."""

from __future__ import annotations

from chalicelib.storage.models import CounterModel


def next_id(name: str) -> int:
    """Atomically take the next integer id for ``name`` (1, 2, 3...)."""
    counter = CounterModel(name)
    counter.update(actions=[CounterModel.value.add(1)])
    return int(counter.value)
