"""DynamoDB write request units of one write, from the item before and after it.

What on-demand DynamoDB bills (the developer guide's "Read/write capacity mode" and
"Global secondary indexes: provisioned throughput considerations"):

- the table: one unit per KB (rounded up) of the larger of the item before and after,
  at least one, whether the write changed anything or its condition failed; two per KB
  for an item of ``TransactWriteItems`` (a ``ConditionCheck`` included);
- each global secondary index, only when the write succeeded and touches the index
  entry: an index key attribute added (a put), removed (a delete), or changed (a delete
  and a put: two writes); with the key unchanged, one write when a projected attribute
  changed (any attribute with ``ALL``; none with ``KEYS_ONLY``). Index writes are plain
  writes even under a transaction. An index entry's size is that of the projected item.

The emulator (``local/emulator.py``) reads each touched item before and after every
write and reports these units with the answer; the benchmarks add them up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

Item = Mapping[str, Mapping[str, Any]]  # DynamoDB JSON: {"name": {"S": "x"}, ...}
KB = 1024


@dataclass(frozen=True)
class IndexSpec:
    """A global secondary index as billing sees it."""

    name: str
    keys: tuple[str, ...]  # its hash (and range) key attributes
    projection: str  # ALL, KEYS_ONLY or INCLUDE
    table_keys: tuple[str, ...] = ()
    included: tuple[str, ...] = ()

    def projected(self, item: Item) -> dict[str, Mapping[str, Any]]:
        if self.projection == "ALL":
            return dict(item)
        keep = set(self.keys) | set(self.table_keys) | set(self.included)
        return {name: value for name, value in item.items() if name in keep}

    def holds(self, item: Item | None) -> bool:
        """Sparse: an item is in the index only when it has every index key attribute."""
        return item is not None and all(key in item for key in self.keys)


def _number_size(text: str) -> int:
    # About one byte per two significant digits, plus one (the developer guide's rule).
    digits = str(Decimal(text).normalize()).lstrip("-").replace(".", "")
    digits = digits.split("E")[0].strip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def value_size(value: Mapping[str, Any]) -> int:  # noqa: PLR0911 - one per type
    kind, data = next(iter(value.items()))
    if kind == "S":
        return len(str(data).encode("utf-8"))
    if kind == "N":
        return _number_size(str(data))
    if kind == "B":
        return len(data) if isinstance(data, bytes) else math.ceil(len(str(data)) * 3 / 4)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(s).encode("utf-8")) for s in data)
    if kind == "NS":
        return sum(_number_size(str(n)) for n in data)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in data)
    if kind == "M":
        return 3 + sum(1 + len(k.encode("utf-8")) + value_size(v) for k, v in data.items())
    return len(str(data))


def item_size(item: Item | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())


def _units(size: int) -> int:
    return max(1, math.ceil(size / KB))


def index_units(index: IndexSpec, before: Item | None, after: Item | None) -> int:
    """Writes to one index for a successful write that turned ``before`` into ``after``."""
    was, now = index.holds(before), index.holds(after)
    if not was and not now:
        return 0
    assert before is not None or after is not None
    if was and not now:
        return _units(item_size(index.projected(before)))  # type: ignore[arg-type]
    if now and not was:
        return _units(item_size(index.projected(after)))  # type: ignore[arg-type]
    old = index.projected(before)  # type: ignore[arg-type]
    new = index.projected(after)  # type: ignore[arg-type]
    if any(old[key] != new[key] for key in index.keys):
        return _units(item_size(old)) + _units(item_size(new))
    return _units(item_size(new)) if old != new else 0


def write_units(
    before: Item | None,
    after: Item | None,
    indexes: Sequence[IndexSpec],
    *,
    applied: bool = True,
    transactional: bool = False,
) -> dict[str, int]:
    """Units of one item write: ``{"table": n, <index name>: n, ...}`` (zeros left out).

    ``applied`` False: the write was refused (a failed condition, a cancelled
    transaction): the table's units are still billed, the indexes are not touched.
    """
    table = _units(max(item_size(before), item_size(after))) * (2 if transactional else 1)
    units = {"table": table}
    if applied:
        for index in indexes:
            n = index_units(index, before, after)
            if n:
                units[index.name] = n
    return units
