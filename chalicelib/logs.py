"""Structured logs through Powertools for AWS Lambda's ``Logger``: one JSON object a line.

The service's loggers (``get_logger("sender")`` is ``notify.sender``) are standard
library children of one Powertools ``Logger`` (service ``notify``) whose handler writes
every line to stdout (Lambda ships it to CloudWatch Logs): JSON in Lambda, readable
lines for a person at a terminal (``LOG_STYLE=pretty``, the local stack). Powertools
gives the line its ``level``, ``location``, ``service`` and exception fields
(``exception``, ``exception_name``, ``stack_trace``), honours Lambda's advanced logging
controls (``AWS_LAMBDA_LOG_LEVEL``) and adds ``xray_trace_id`` when tracing is on.

Handlers bind correlation fields (``request_id``, ``task_id``, ``message_id``...) with
:func:`bind`, which keeps them in Powertools' thread-safe keys: every line written in
the block, in that thread, carries them, so an operator can search CloudWatch Logs for
one id (README, "Logs and metrics"). Phones never reach a line whole: a ``phone`` field
is masked by the formatter whatever the caller passed, and :func:`mask_phone` masks one
anywhere else.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

from aws_lambda_powertools.logging import Logger as PowertoolsLogger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

SERVICE = "notify"
LOGGER_NAME = SERVICE

# Attributes every LogRecord has, and the fields Powertools computes itself: an
# ``extra`` key with one of these names would raise or be dropped, so it is renamed.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "location",
    "timestamp",
}

# Fields whose value is a phone number: masked on every line.
_PHONE_FIELDS = frozenset({"phone"})


def mask_phone(phone: str) -> str:
    """``79001234567`` -> ``7900***4567``: enough to tell clients apart, not to call them."""
    if len(phone) <= 8:
        return "***"
    return f"{phone[:4]}***{phone[-4:]}"


def _masked_field(key: str, value: Any) -> Any:
    if key in _PHONE_FIELDS and value is not None:
        return mask_phone(str(value))
    return _masked(value)


# A client phone (7 and ten digits, docs/SPEC.md) inside any text: a reason quoting a
# file's cells or a provider's answer. Numbers (ids) are never touched, only text.
_PHONE_IN_TEXT = re.compile(r"(?<!\d)7\d{10}(?!\d)")


def _masked(value: Any) -> Any:
    """``value`` with every ``phone`` field (at any depth), and every phone inside a
    text, masked; masking is idempotent."""
    if isinstance(value, str):
        return _PHONE_IN_TEXT.sub(lambda found: mask_phone(found[0]), value)
    if isinstance(value, Mapping):
        return {key: _masked_field(key, item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    return value


class JsonFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON line with the fields the docs promise: ``timestamp`` (UTC, ISO
    8601 with milliseconds), ``level``, ``logger``, ``message``, then the bound
    correlation fields and the call's own. An Embedded Metric Format document (the
    ``emf`` extra, see ``metrics.py``) is written as the whole line, as CloudWatch
    requires."""

    def __init__(self) -> None:
        super().__init__(
            utc=True,
            use_rfc3339=True,
            log_record_order=["timestamp", "level", "logger", "message"],
            service=SERVICE,
        )

    def format(self, record: logging.LogRecord) -> str:
        emf = getattr(record, "emf", None)
        if isinstance(emf, dict):
            return self.metrics_line(record, emf)
        record.logger = record.name  # an extra field, in the place log_record_order gives it
        return super().format(record)

    def serialize(self, log: Mapping[str, Any]) -> str:
        return super().serialize(_masked(log))

    def metrics_line(self, record: logging.LogRecord, emf: dict[str, Any]) -> str:
        return json.dumps(emf, default=str)


# Shown by the pretty formatter only when something went wrong (the exception) or not at
# all: Powertools' bookkeeping, and the stand-in invocation ids of the local stack, that a
# person at a terminal does not need.
_NOT_SHOWN = frozenset(
    {
        "function_request_id",
        "timestamp",
        "level",
        "logger",
        "message",
        "service",
        "location",
        "sampling_rate",
        "xray_trace_id",
        "exception",
        "exception_name",
        "exception_notes",
        "stack_trace",
    }
)


class PrettyFormatter(JsonFormatter):
    """For a person at a terminal (the local stack): time, level, logger, message, fields;
    the same fields as the JSON line, masked the same way."""

    def serialize(self, log: Mapping[str, Any]) -> str:
        line = _masked(log)
        moment = str(line.get("timestamp", ""))[11:19]  # HH:MM:SS of the ISO timestamp
        name = str(line.get("logger", "")).removeprefix(f"{LOGGER_NAME}.")
        message = line.get("message", "")
        text = f"{moment} {line.get('level', ''):<5} {name:<10} {_text(message)}"
        shown = " ".join(f"{k}={_short(v)}" for k, v in line.items() if k not in _NOT_SHOWN)
        if shown:
            text += f"  {shown}"
        if line.get("exception"):
            text += "\n" + str(line["exception"])
        return text

    def metrics_line(self, record: logging.LogRecord, emf: dict[str, Any]) -> str:
        moment = time.strftime("%H:%M:%S", time.gmtime(record.created))
        name = record.name.removeprefix(f"{LOGGER_NAME}.")
        names = [m["Name"] for m in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
        shown = " ".join(f"{metric}={_short(emf[metric])}" for metric in names)
        return f"{moment} {record.levelname:<5} {name:<10} {record.getMessage()}  {shown}"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _short(value: Any) -> str:
    text = _text(value)
    return text if len(text) <= 80 else text[:77] + "..."


class _FieldSafeAdapter(logging.LoggerAdapter[logging.Logger]):
    """Renames ``extra`` keys that LogRecord or Powertools reserve (``created``,
    ``timestamp``...) instead of raising or losing them."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = kwargs.get("extra")
        if extra:
            kwargs["extra"] = {
                (f"{key}_" if key in _RECORD_ATTRS else key): value for key, value in extra.items()
            }
        return msg, kwargs


Logger = _FieldSafeAdapter


def get_logger(name: str | None = None) -> Logger:
    return _FieldSafeAdapter(logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME))


_root: PowertoolsLogger | None = None


def configure(level: str = "INFO", style: str = "json") -> PowertoolsLogger:
    """Send the service's logs to stdout: JSON lines, or readable lines for a terminal
    (``style="pretty"``). The first call creates the Powertools logger; later ones change
    its level and format."""
    global _root  # noqa: PLW0603 - one logger per process, as Powertools expects
    formatter = PrettyFormatter() if style == "pretty" else JsonFormatter()
    if _root is None:
        _root = PowertoolsLogger(
            service=SERVICE, level=level, logger_formatter=formatter, stream=sys.stdout
        )
    else:
        _root.setLevel(level)
        _root.registered_handler.setFormatter(formatter)
    # Lambda's runtime adds its own root handler; ours is the one that formats.
    logging.getLogger(LOGGER_NAME).propagate = False
    return _root


def _logger() -> PowertoolsLogger:
    return _root if _root is not None else configure()


@contextlib.contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add correlation fields to every log line written inside the block (in this thread
    or task); on the way out the fields are as they were before it."""
    root = _logger()
    before = dict(root.thread_safe_get_current_keys())
    root.thread_safe_append_keys(**{k: v for k, v in fields.items() if v is not None})
    try:
        yield
    finally:
        root.thread_safe_clear_keys()
        if before:
            root.thread_safe_append_keys(**before)


def invocation(context: Any) -> contextlib.AbstractContextManager[None]:
    """Bind the Lambda invocation's id to every line of the block, named as Powertools'
    ``inject_lambda_context`` names it: ``function_request_id`` is the id on Lambda's own
    START, END and REPORT lines (duration, memory, "Task timed out"), so a timeout or a
    slow batch leads to the jobs it held. Chalice hands its handlers the event alone, so
    that decorator, which wants ``(event, context)``, cannot wrap them."""
    return bind(function_request_id=getattr(context, "aws_request_id", None))


class Stopwatch:
    def __init__(self) -> None:
        self._start = time.perf_counter()

    @property
    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self._start) * 1000, 2)
