"""Structured JSON logging: one JSON object a line, with the request id on every line.

Handlers bind correlation fields (``request_id``, later ``task_id``...) with
:func:`bind`; every line logged while they are bound carries them, so an operator can
search CloudWatch Logs for one id. Phones are masked with :func:`mask_phone` before
they reach a log call.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

LOGGER_NAME = "service"

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "log_context", default=None
)

# Attributes every LogRecord has; anything else passed through ``extra=`` is a field.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        emf = getattr(record, "emf", None)
        if isinstance(emf, dict):
            # An Embedded Metric Format document must be the line's top-level object.
            return json.dumps(emf, default=str)
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_context.get() or {})
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class _FieldSafeAdapter(logging.LoggerAdapter[logging.Logger]):
    """Renames ``extra`` keys that LogRecord reserves (``created``...) instead of raising."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = kwargs.get("extra")
        if extra:
            kwargs["extra"] = {
                (f"{key}_" if key in _RECORD_ATTRS else key): value for key, value in extra.items()
            }
        return msg, kwargs


Logger = _FieldSafeAdapter


class PrettyFormatter(logging.Formatter):
    """For a person at a terminal (the local stack): time, level, logger, message, fields."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        name = record.name.removeprefix(f"{LOGGER_NAME}.")
        fields = dict(_context.get() or {})
        emf = getattr(record, "emf", None)
        if isinstance(emf, dict):
            names = [m["Name"] for m in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
            fields = {metric: emf[metric] for metric in names}
        else:
            for key, value in vars(record).items():
                if key not in _RECORD_ATTRS and not key.startswith("_"):
                    fields[key] = value
        shown = " ".join(f"{key}={_short(value)}" for key, value in fields.items())
        text = f"{moment} {record.levelname:<5} {name:<10} {record.getMessage()}"
        if shown:
            text += f"  {shown}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def get_logger(name: str | None = None) -> Logger:
    return _FieldSafeAdapter(logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME))


def configure(level: str = "INFO", style: str = "json") -> None:
    """Send the service's logs to stdout (Lambda ships stdout to CloudWatch): JSON lines,
    or readable lines for a terminal (``style="pretty"``, the local stack)."""
    root = logging.getLogger(LOGGER_NAME)
    root.setLevel(level)
    formatter = PrettyFormatter() if style == "pretty" else JsonFormatter()
    ours = [h for h in root.handlers if getattr(h, "_notify_json", False)]
    if ours:
        for handler in ours:
            handler.setFormatter(formatter)
    else:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(formatter)
        handler._notify_json = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    # Lambda's runtime adds its own root handler; ours is the one that formats.
    root.propagate = False


@contextlib.contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add correlation fields to every log line written inside the block."""
    merged = {**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def mask_phone(phone: str) -> str:
    """``79001234567`` -> ``7900***4567``: enough to tell clients apart, not to call them."""
    if len(phone) <= 8:
        return "***"
    return f"{phone[:4]}***{phone[-4:]}"


class Stopwatch:
    def __init__(self) -> None:
        self._start = time.perf_counter()

    @property
    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self._start) * 1000, 2)
