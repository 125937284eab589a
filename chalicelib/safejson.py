"""JSON from outside, parsed with bounds: nesting depth, and only finite numbers.

``json.loads`` recurses once per level of nesting, so 5,000 ``[`` exhaust the stack
(``RecursionError``, a 500) before it can say the text is malformed; ``1e999`` decodes to
``inf``. Bodies and page cursors are parsed here instead, so hostile text is a
``ValueError`` the caller answers with 400.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 64

# A JSON string (escapes included) or one bracket: brackets inside strings do not count.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


class TooDeep(ValueError):
    """The text nests arrays and objects deeper than allowed."""


def depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` in ``text``, counted without recursion.

    Malformed text gets an approximate answer; json.loads refuses it anyway.
    """
    level = deepest = 0
    for match in _TOKEN.finditer(text):
        piece = match.group()
        if piece in "[{":
            level += 1
            deepest = max(deepest, level)
        elif piece in "]}":
            level -= 1
    return deepest


def loads(raw: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that refuses deep nesting, ``NaN``/``Infinity`` and numbers that
    overflow a float (``1e999``), raising ValueError (``TooDeep`` for nesting)."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    if depth(text) > max_depth:
        raise TooDeep(f"nested deeper than {max_depth} levels")
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value
