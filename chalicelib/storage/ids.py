"""Service-assigned integer ids from atomic DynamoDB counters."""

from __future__ import annotations

from chalicelib.storage.models import CounterModel

# The counter of the test sends (chalicelib/domain/messages.py: their msgIds).
TEST_SENDS = "test_sends"


def next_id(name: str) -> int:
    """Atomically take the next integer id for ``name`` (1, 2, 3...)."""
    return take_ids(name, 1)[0]


def take_ids(name: str, count: int) -> range:
    """Atomically take the next ``count`` integer ids for ``name`` in one write."""
    if count < 1:
        raise ValueError("take at least one id")
    counter = CounterModel(name)
    counter.update(actions=[CounterModel.value.add(count)])
    last = int(counter.value)
    return range(last - count + 1, last + 1)


class DynamoTestSendNumbers:
    """The test sends' numbers (``TestSendNumbers`` in ``chalicelib/ports.py``)."""

    def take(self, count: int) -> list[int]:
        return list(take_ids(TEST_SENDS, count))
