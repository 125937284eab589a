"""The export's rules (chalicelib/domain/exports.py): its CSV rows, the cells a
spreadsheet would evaluate, and its job's body on the import queue."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from chalicelib.domain.exports import (
    HEADER,
    ExportRow,
    csv_line,
    export_id_of,
    export_job_body,
    safe_cell,
)
from chalicelib.queue import ExportJob, ImportJob
from chalicelib.services.imports import import_ids


def test_the_header_and_a_row_as_the_api_gives_the_values() -> None:
    row = ExportRow(
        id=7,
        client_id=3,
        phone="79001234567",
        status="failed",
        created_at=datetime(2026, 11, 28, 12, 0, tzinfo=UTC),
        sent_at=None,
        attempts=2,
        last_error='HTTP 400, "bad"',
    )
    assert HEADER == b"id,client_id,phone,status,created_at,sent_at,attempts,last_error\r\n"
    line = csv_line(row)
    assert line == b'7,3,79001234567,failed,2026-11-28T12:00:00Z,,2,"HTTP 400, ""bad"""\r\n'
    assert next(csv.reader(io.StringIO(line.decode())))[-1] == 'HTTP 400, "bad"'


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+7900", "'+7900"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_a_cell_a_spreadsheet_would_evaluate_gets_a_quote(cell: str, written: str) -> None:
    assert safe_cell(cell) == written


def test_an_export_job_is_told_from_the_other_messages_of_the_import_queue() -> None:
    body = ExportJob(5).to_body()
    assert body == export_job_body(5) == '{"v":1,"export":5}'
    assert export_id_of(body) == 5
    assert import_ids(body, "bucket") == []
    for other in (ImportJob(5).to_body(), "not json", "[]", '{"v":1,"export":"5"}', "{}"):
        assert export_id_of(other) is None
