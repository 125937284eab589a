"""Structured logging: JSON lines that carry the bound correlation ids."""

from __future__ import annotations

import io
import json
import logging

from chalicelib import logs


def capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("service.test-capture")
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


def test_reserved_field_names_are_renamed_not_fatal(capsys: object) -> None:
    logger, stream = capture()
    adapter = logs.Logger(logger)
    adapter.info("page", extra={"created": 3, "name": "x"})
    (line,) = stream.getvalue().splitlines()
    fields = json.loads(line)
    assert fields["created_"] == 3
    assert fields["name_"] == "x"
