"""Structured logging: JSON lines that carry the bound correlation ids."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from chalicelib import logs, metrics


def capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger(f"{logs.LOGGER_NAME}.test-capture")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_lines_are_json_with_bound_fields_and_extras() -> None:
    logger, stream = capture()
    with logs.bind(request_id="req-1"), logs.bind(task_id=7):
        logger.info("client updated", extra={"client_id": 3})
    logger.info("outside")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "client updated"
    assert first["request_id"] == "req-1"
    assert first["task_id"] == 7
    assert first["client_id"] == 3
    assert first["level"] == "INFO"
    assert "request_id" not in second


def test_exceptions_are_kept_inside_the_json_line() -> None:
    logger, stream = capture()
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("failed")
    (line,) = stream.getvalue().splitlines()
    assert "RuntimeError: boom" in json.loads(line)["exception"]


def test_phone_mask_hides_the_middle() -> None:
    assert logs.mask_phone("79001234567") == "7900***4567"
    assert logs.mask_phone("123") == "***"


def test_a_phone_inside_any_text_field_is_masked(service_lines: io.StringIO) -> None:
    """A reason that quotes a file's cells (an import whose first row is no header) or a
    provider's error must not carry a whole phone into the logs."""
    log = logs.get_logger("imports")
    log.info(
        "import failed",
        extra={"reason": "unknown column '79001234567', '900'", "cells": ["+79007654321"]},
    )
    (line,) = service_lines.getvalue().splitlines()
    fields = json.loads(line)
    assert fields["reason"] == "unknown column '7900***4567', '900'"
    assert fields["cells"] == ["+7900***4321"]
    assert "79001234567" not in line and "79007654321" not in line


def test_reserved_field_names_are_renamed_not_fatal(capsys: object) -> None:
    logger, stream = capture()
    adapter = logs.Logger(logger)
    adapter.info("page", extra={"created": 3, "name": "x"})
    (line,) = stream.getvalue().splitlines()
    fields = json.loads(line)
    assert fields["created_"] == 3
    assert fields["name_"] == "x"


@contextlib.contextmanager
def through_the_service_handler(style: str = "json") -> Iterator[io.StringIO]:
    """The Powertools handler the service writes through, pointed at a buffer."""
    handler = logs.configure(style=style).registered_handler
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    before = handler.setStream(stream)
    try:
        yield stream
    finally:
        handler.setStream(before)
        logs.configure()


@pytest.fixture
def service_lines() -> Iterator[io.StringIO]:
    with through_the_service_handler() as stream:
        yield stream


def test_a_sender_line_through_powertools_masks_the_phone_and_carries_the_ids(
    service_lines: io.StringIO,
) -> None:
    sender = logs.get_logger("sender")
    with (
        logs.bind(request_id="req-9"),
        logs.bind(task_id=4, message_id=40000000017, client_id=17),
    ):
        sender.info("provider call", extra={"phone": "79001234567", "attempt": 1})
        sender.info("nested", extra={"client": {"phone": "79007654321"}})
    first, second = (json.loads(line) for line in service_lines.getvalue().splitlines())
    assert first["phone"] == "7900***4567"
    assert second["client"]["phone"] == "7900***4321"
    assert "79001234567" not in service_lines.getvalue()
    assert "79007654321" not in service_lines.getvalue()
    assert (first["request_id"], first["task_id"], first["message_id"], first["client_id"]) == (
        "req-9",
        4,
        40000000017,
        17,
    )
    assert (first["level"], first["logger"], first["message"]) == (
        "INFO",
        "notify.sender",
        "provider call",
    )
    assert first["service"] == "notify"
    assert first["attempt"] == 1
    assert datetime.fromisoformat(first["timestamp"]).utcoffset() == timedelta(0)


def test_bound_ids_end_with_their_block_and_stay_in_their_thread(
    service_lines: io.StringIO,
) -> None:
    log = logs.get_logger("sender")
    inside = threading.Event()
    release = threading.Event()

    def other_message() -> None:
        with logs.bind(message_id=2):
            inside.set()
            release.wait(5)
            log.info("other thread")

    worker = threading.Thread(target=other_message)
    with logs.bind(task_id=1, message_id=1):
        worker.start()
        inside.wait(5)
        log.info("this thread")
        with logs.bind(message_id=3):
            log.info("inner block")
        log.info("after the inner block")
        release.set()
        worker.join(5)
    log.info("after every block")
    lines = {
        line["message"]: line
        for line in (json.loads(text) for text in service_lines.getvalue().splitlines())
    }
    assert lines["this thread"]["message_id"] == 1
    assert lines["inner block"]["message_id"] == 3
    assert lines["after the inner block"]["message_id"] == 1
    assert lines["other thread"]["message_id"] == 2
    assert "task_id" not in lines["other thread"]
    assert "message_id" not in lines["after every block"]
    assert "task_id" not in lines["after every block"]


def test_pretty_lines_are_readable_and_masked_the_same_way() -> None:
    with through_the_service_handler(style="pretty") as stream:
        with logs.bind(task_id=5):
            logs.get_logger("clients").info(
                "client created", extra={"client_id": 3, "phone": "79001234567"}
            )
        logs.get_logger("metrics").info(
            "metrics", extra={"emf": metrics.emf_document({"MessagesSent": 2}, {}, "local")}
        )
    created, published = stream.getvalue().splitlines()
    clock = r"\d\d:\d\d:\d\d"
    fields = r"task_id=5 client_id=3 phone=7900\*\*\*4567"
    assert re.fullmatch(rf"{clock} INFO  clients    client created  {fields}", created)
    assert re.fullmatch(rf"{clock} INFO  metrics    metrics  MessagesSent=\[2\.0\]", published)


def test_the_app_writes_each_line_once_through_the_powertools_handler() -> None:
    # Chalice names its logger after the app ("notify"), the service's logger's name: its
    # own handler would print every line again, as text.
    import app  # noqa: PLC0415, F401 - what Lambda loads

    service = logging.getLogger(logs.LOGGER_NAME)
    # pytest adds its capture handlers to a logger that does not propagate.
    (handler,) = [h for h in service.handlers if not type(h).__module__.startswith("_pytest")]
    assert isinstance(handler.formatter, logs.JsonFormatter)
    assert not service.propagate
