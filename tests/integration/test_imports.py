"""Bulk import of clients (SPEC, "Bulk import and export") on moto: the file goes to the
pre-signed URL, the bucket's "object created" event reaches the import queue (moto
delivers it, as S3 does), and the queue's messages go to ``app.import_files`` as Lambda's
mapping would hand them."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

import app as app_module
from chalicelib.domain.imports import (
    CHECKPOINT_COUNTERS,
    CHUNK_ROWS,
    KEEP_DAYS,
    UPLOAD_GRACE_SECONDS,
    RowError,
)
from chalicelib.ports import PartsLost, StaleImport
from chalicelib.storage.clients import DynamoClients
from chalicelib.storage.imports import DynamoImports
from chalicelib.storage.models import ClientModel, ImportModel, PhoneModel
from local.lambda_runner import LambdaContext, sqs_event
from tests.conftest import Api

HEADER = "phone,code,tag,utc\n"


def row(n: int, code: str = "900", tag: str = "", utc: str = "UTC") -> str:
    return f"7900{n:07d},{code},{tag},{utc}\n"


def start(api: Api) -> dict[str, Any]:
    response = api.post("/api/imports/", {"format": "csv"})
    assert response.status_code == 201, response.body
    return dict(response.json_body)


def put(url: str, body: bytes | str) -> None:
    """What `curl -T file URL` does: a PUT with the bytes, no other header."""
    data = body.encode() if isinstance(body, str) else body
    answer = requests.put(url, data=data, timeout=10)
    assert answer.status_code == 200, answer.text


def queued(services: Any) -> list[dict[str, Any]]:
    queue = services.import_queue
    return list(
        queue.client.receive_message(
            QueueUrl=queue.url, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", [])
    )


def drain(services: Any, limit: int = 50) -> int:
    """Hand the import queue's messages to the import handler until it is empty."""
    queue = services.import_queue
    arn = queue.client.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    handled = 0
    for _ in range(limit):
        messages = queued(services)
        if not messages:
            return handled
        for message in messages:
            event = sqs_event([message], arn, "us-east-1")
            app_module.import_files(event, LambdaContext("import_files", timeout_seconds=300))
            queue.client.delete_message(QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"])
            handled += 1
    raise AssertionError("the import queue never emptied")


def status(api: Api, import_id: int) -> dict[str, Any]:
    response = api.get(f"/api/imports/{import_id}")
    assert response.status_code == 200, response.body
    return dict(response.json_body)


def run_import(api: Api, services: Any, body: bytes | str) -> dict[str, Any]:
    created = start(api)
    put(created["upload_url"], body)
    drain(services)
    return status(api, created["id"])


def clients(api: Api) -> dict[str, dict[str, Any]]:
    items = api.get("/api/clients/?limit=1000").json_body["items"]
    return {item["phone"]: item for item in items}


def preview(api: Api, filter_: Any) -> int:
    return int(api.post("/api/audience/preview", {"filter": filter_}).json_body["count"])


@pytest.fixture(autouse=True)
def _bucket_test_event_handled(services: Any) -> None:
    """S3 (and moto) sends a test event when notifications are set up: handled (and
    dropped) here, so each test starts with an empty import queue."""
    assert drain(services) == 1


# --- the routes -------------------------------------------------------------------------


def test_post_answers_a_presigned_upload_url_waiting_for_the_file(api: Api, services: Any) -> None:
    created = start(api)
    assert set(created) == {"id", "status", "upload_url", "expires_at"}
    assert created["status"] == "waiting_upload"
    assert created["expires_at"] == "2026-11-28T13:00:00Z"  # the frozen clock + 1 h
    assert "X-Amz-Signature=" in created["upload_url"]
    assert status(api, created["id"]) == {
        "id": created["id"],
        "status": "waiting_upload",
        "rows": 0,
        "created": 0,
        "updated": 0,
        "rejected": 0,
        "errors": [],
        "error_report_url": None,
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "format"), ({"format": "xlsx"}, "format"), ({"format": "csv", "x": 1}, "x")],
)
def test_post_refuses_a_bad_body(api: Api, services: Any, body: Any, field: str) -> None:
    response = api.post("/api/imports/", body)
    assert response.status_code == 400
    assert response.json_body["error"] == "validation_error"
    assert field in response.json_body["fields"]
    assert queued(services) == []


def test_get_of_an_unknown_import_is_404(api: Api) -> None:
    for path in ("/api/imports/99", "/api/imports/abc"):
        response = api.get(path)
        assert response.status_code == 404
        assert response.json_body["error"] == "not_found"


def test_routes_need_the_key(anonymous: Api) -> None:
    assert anonymous.post("/api/imports/", {"format": "csv"}).status_code == 401
    assert anonymous.get("/api/imports/1").status_code == 401


# --- a clean file ----------------------------------------------------------------------


def test_a_clean_file_creates_every_client(api: Api, services: Any) -> None:
    # Columns in another order, a spreadsheet's BOM and CRLF line ends, a quoted tag with
    # a comma, a blank line (skipped), no line end after the last row.
    body = (
        "\ufeffutc,phone,tag,code\r\n"
        "Europe/Moscow,79001234567,vip,900\r\n"
        '+03:00,79001234568,"a, b",901\r\n'
        "\r\n"
        "UTC,79001234569,,902"
    )
    result = run_import(api, services, body)
    assert result["status"] == "done"
    assert (result["rows"], result["created"], result["updated"], result["rejected"]) == (
        3,
        3,
        0,
        0,
    )
    assert result["errors"] == []
    assert result["error_report_url"] is None
    stored = clients(api)
    assert {p: (c["code"], c["tag"], c["utc"]) for p, c in stored.items()} == {
        "79001234567": ("900", "vip", "Europe/Moscow"),
        "79001234568": ("901", "a, b", "+03:00"),
        "79001234569": ("902", "", "UTC"),
    }
    # The audience counters moved with each client, as with POST /api/clients/.
    assert preview(api, {}) == 3
    assert preview(api, {"codes": ["901"], "tags": ["a, b"]}) == 1


# --- bad rows --------------------------------------------------------------------------


def test_every_kind_of_bad_row_is_reported_by_line_and_changes_nothing(
    api: Api, services: Any
) -> None:
    lines = [
        HEADER,  # 1
        row(1),  # 2 good
        "8900123456,900,,UTC\n",  # 3 phone
        "79000000003,,,UTC\n",  # 4 code empty
        f"79000000004,{'c' * 101},,UTC\n",  # 5 code too long
        f"79000000005,900,{'t' * 2001},UTC\n",  # 6 tag too long
        "79000000006,900,,Mars/Base\n",  # 7 zone
        "79000000007,900,,+15:00\n",  # 8 offset out of range
        "79000000008,900,UTC\n",  # 9 three values
        "79000000009,900,,UTC,extra\n",  # 10 five values
    ]
    body = "".join(lines).encode() + b"79000000010,9\xff0,,UTC\n" + row(11).encode()  # 11, 12
    result = run_import(api, services, body)
    assert result["status"] == "done"
    assert (result["rows"], result["created"], result["rejected"]) == (11, 2, 9)
    assert [(e["line"], e["field"]) for e in result["errors"]] == [
        (3, "phone"),
        (4, "code"),
        (5, "code"),
        (6, "tag"),
        (7, "utc"),
        (8, "utc"),
        (9, "line"),
        (10, "line"),
        (11, "line"),
    ]
    assert result["errors"][0]["message"] == "must be 7 followed by ten digits"
    assert result["errors"][8]["message"] == "not UTF-8"
    assert set(clients(api)) == {"79000000001", "79000000011"}
    assert PhoneModel.count() == 2
    report = requests.get(result["error_report_url"], timeout=10)
    assert report.status_code == 200
    report_lines = report.text.splitlines()
    assert report_lines[0] == "line,field,message"
    assert report_lines[1] == "3,phone,must be 7 followed by ten digits"
    assert len(report_lines) == 10


def test_the_report_has_every_error_and_the_record_the_first_hundred(
    api: Api, services: Any
) -> None:
    body = HEADER + "".join(f"7{n:03d},900,,UTC\n" for n in range(250))
    result = run_import(api, services, body)
    assert (result["rows"], result["rejected"]) == (250, 250)
    assert [e["line"] for e in result["errors"]] == list(range(2, 102))
    report = requests.get(result["error_report_url"], timeout=10).text.splitlines()
    assert [int(line.split(",")[0]) for line in report[1:]] == list(range(2, 252))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "the file is empty"),
        (b"phone,code,tag\n79001234567,900,vip\n", "missing column utc"),
        (HEADER.replace("\n", ",age\n").encode() + b"79001234567,900,,UTC,3\n", "unknown column"),
        (b"phone,code,tag,utc,code\n", "more than once"),
        (b"ph\xf6ne,code,tag,utc\n" + row(1).encode(), "not UTF-8"),
    ],
)
def test_a_header_error_fails_the_import_and_applies_nothing(
    api: Api, services: Any, body: bytes, message: str
) -> None:
    result = run_import(api, services, body)
    assert result["status"] == "failed"
    assert result["rows"] == 0
    [error] = result["errors"]
    assert (error["line"], error["field"]) == (1, "header")
    assert message in error["message"]
    assert ClientModel.count() == 0


# --- phones ------------------------------------------------------------------------------


def test_a_phone_twice_in_a_file_the_first_row_applies_the_later_is_rejected(
    api: Api, services: Any
) -> None:
    # Twice in one chunk (lines 2 and 4), and across chunks (line 3 and a line past the
    # first chunk); a first occurrence that is itself rejected does not count (line 5's
    # bad zone, then line 6 applies).
    far = CHUNK_ROWS + 10
    lines = [HEADER, row(1, tag="first"), row(2, tag="early"), row(1, tag="second")]
    lines += [row(3, utc="Nowhere/Zone"), row(3, tag="valid")]
    lines += [row(100 + n) for n in range(far)]
    lines += [row(2, tag="late")]
    result = run_import(api, services, "".join(lines))
    assert result["status"] == "done"
    dup_line = len(lines)
    assert [(e["line"], e["field"], e["message"]) for e in result["errors"]] == [
        (4, "phone", "the same phone is on line 2; that row applies"),
        (5, "utc", result["errors"][1]["message"]),
        (dup_line, "phone", "the same phone is on line 3; that row applies"),
    ]
    stored = clients(api)
    assert stored["79000000001"]["tag"] == "first"
    assert stored["79000000002"]["tag"] == "early"
    assert stored["79000000003"]["tag"] == "valid"
    assert (result["created"], result["updated"], result["rejected"]) == (3 + far, 0, 3)


def test_a_phone_of_an_existing_client_updates_that_client(api: Api, services: Any) -> None:
    existing = api.post(
        "/api/clients/", {"phone": "79001234567", "code": "900", "tag": "old", "utc": "UTC"}
    ).json_body
    other = api.post(
        "/api/clients/", {"phone": "79001234568", "code": "901", "tag": "x", "utc": "UTC"}
    ).json_body
    body = HEADER + "79001234567,905,new,Asia/Tokyo\n" + "79001234569,905,new,UTC\n"
    result = run_import(api, services, body)
    assert (result["created"], result["updated"], result["rejected"]) == (1, 1, 0)
    stored = clients(api)
    assert stored["79001234567"] == {
        "id": existing["id"],
        "phone": "79001234567",
        "code": "905",
        "tag": "new",
        "utc": "Asia/Tokyo",
    }
    assert stored["79001234568"] == other  # untouched
    assert len(stored) == 3
    assert preview(api, {"codes": ["900"]}) == 0
    assert preview(api, {"codes": ["905"], "tags": ["new"]}) == 2
    assert preview(api, {}) == 3


# --- idempotence ---------------------------------------------------------------------------


def test_an_event_delivered_twice_gives_the_result_of_one(api: Api, services: Any) -> None:
    created = start(api)
    put(created["upload_url"], HEADER + row(1) + row(2) + "bad,900,,UTC\n")
    [event] = queued(services)  # S3's event, held: it comes back after the visibility timeout
    drain_event = sqs_event([event], "arn:aws:sqs:us-east-1:123456789012:x", "us-east-1")
    context = LambdaContext("import_files", timeout_seconds=300)
    app_module.import_files(drain_event, context)
    first = status(api, created["id"])
    before = {item.phone: item.version for item in ClientModel.scan()}
    app_module.import_files(drain_event, context)  # the same event again
    assert status(api, created["id"]) == first
    assert (first["created"], first["rejected"]) == (2, 1)
    assert {item.phone: item.version for item in ClientModel.scan()} == before


def test_a_resumed_import_carries_on_from_its_checkpoint(api: Api, services: Any) -> None:
    total = 2 * CHUNK_ROWS + 50
    created = start(api)
    put(created["upload_url"], HEADER + "".join(row(n) for n in range(total)))
    assert len(queued(services)) == 1  # the event, now invisible for a while
    # An invocation whose time is out after its first chunk: it queues the next job.
    services.imports.run(created["id"], budget_seconds=0)
    middle = status(api, created["id"])
    assert (middle["status"], middle["rows"], middle["created"]) == ("running", CHUNK_ROWS, 100)
    assert ClientModel.count() == CHUNK_ROWS
    drain(services)
    done = status(api, created["id"])
    assert (done["status"], done["rows"], done["created"]) == ("done", total, total)
    assert ClientModel.count() == total


def test_rows_applied_before_a_crash_count_once_when_applied_again(
    api: Api, services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chunk 2 (with an update and a rejected row) is written, then the invocation dies
    # before its checkpoint: the retried chunk finds its rows stamped with their lines.
    api.post("/api/clients/", {"phone": "79000000150", "code": "1", "tag": "", "utc": "UTC"})
    total = 2 * CHUNK_ROWS + 50
    lines = [row(n) for n in range(total)]
    lines[160] = "broken\n"
    created = start(api)
    put(created["upload_url"], HEADER + "".join(lines))
    real_save = DynamoImports.save
    saves: list[int] = []

    def crash_on_second_checkpoint(
        self: DynamoImports, record: Any, now_ms: int, counts: Any = None
    ) -> Any:
        saves.append(record.progress.rows)
        if record.progress.rows == 2 * CHUNK_ROWS and saves.count(2 * CHUNK_ROWS) == 1:
            raise TimeoutError("the invocation died here")
        return real_save(self, record, now_ms, counts)

    monkeypatch.setattr(DynamoImports, "save", crash_on_second_checkpoint)
    with pytest.raises(TimeoutError):
        services.imports.run(created["id"], budget_seconds=300)
    # Chunk 2 is written: the existing client, 100 created, then 98 (one update, one rejected).
    assert ClientModel.count() == 1 + CHUNK_ROWS + 98
    services.imports.run(created["id"], budget_seconds=300)  # the job comes back
    done = status(api, created["id"])
    assert done["status"] == "done"
    assert (done["rows"], done["created"], done["updated"], done["rejected"]) == (
        total,
        total - 2,
        1,
        1,
    )
    assert [(e["line"], e["field"]) for e in done["errors"]] == [(162, "line")]
    assert ClientModel.count() == total - 1  # every row's client but the broken row's
    assert preview(api, {}) == total - 1


def test_a_checkpoint_written_by_another_runner_stops_this_one(api: Api, services: Any) -> None:
    created = start(api)
    put(created["upload_url"], HEADER + row(1))
    repository = DynamoImports()
    record = repository.get(created["id"])
    assert record is not None
    repository.save(record, 1)
    with pytest.raises(StaleImport):
        repository.save(record, 2)  # read at the version before: refused


def test_a_file_replaced_while_it_is_imported_fails_the_import(api: Api, services: Any) -> None:
    created = start(api)
    put(created["upload_url"], HEADER + "".join(row(n) for n in range(2 * CHUNK_ROWS)))
    services.imports.run(created["id"], budget_seconds=0)
    put(created["upload_url"], HEADER + row(1))  # another upload to the same URL
    drain(services)
    result = status(api, created["id"])
    assert result["status"] == "failed"
    assert result["errors"][-1]["field"] == "file"
    assert "replaced" in result["errors"][-1]["message"]
    assert result["rows"] == CHUNK_ROWS


def test_queue_messages_that_name_no_import_are_dropped(services: Any) -> None:
    handle: Callable[[str, float], None] = services.imports.handle_job
    for body in ("not json", "[]", '{"Records": [{"s3": {}}]}', '{"Event": "s3:TestEvent"}'):
        handle(body, 1.0)
    assert queued(services) == []


# --- a chunk's phones side by side; its counters with its checkpoint ------------------


def test_a_crash_in_the_middle_of_a_parallel_chunk_counts_each_row_once_when_replayed(
    api: Api, services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chunk 2 holds 10 clients that exist (code 1, tag old). Its first run dies in the
    # middle of its rows (the other phones' rows go on being written meanwhile), the
    # second once every row is written but before its checkpoint; the third finishes.
    for n in range(120, 130):
        api.post("/api/clients/", {"phone": row(n)[:11], "code": "1", "tag": "old", "utc": "UTC"})
    total = 2 * CHUNK_ROWS + 50
    lines = [row(n, code=f"9{n % 3}", tag=f"t{n % 2}") for n in range(total)]
    lines[170] = "broken\n"
    created = start(api)
    put(created["upload_url"], HEADER + "".join(lines))
    real_create, real_save = DynamoClients.create_many, DynamoImports.save
    creates, lock = [0], threading.Lock()

    def dies_in_chunk_2s_creates(self: DynamoClients, *args: Any, **kwargs: Any) -> Any:
        # Chunk 1's new clients are 2 transactions, chunk 2's 2 more, side by side: one
        # of those dies, the other writes its clients.
        with lock:
            creates[0] += 1
            dies = creates[0] == 2 + 2
        if dies:
            raise TimeoutError("the invocation died here")
        return real_create(self, *args, **kwargs)

    def dies_at_chunk_2s_checkpoint(
        self: DynamoImports, record: Any, now_ms: int, counts: Any = None
    ) -> Any:
        if record.progress.rows == 2 * CHUNK_ROWS:
            raise TimeoutError("the invocation died here")
        return real_save(self, record, now_ms, counts)

    monkeypatch.setattr(DynamoClients, "create_many", dies_in_chunk_2s_creates)
    with pytest.raises(TimeoutError):
        services.imports.run(created["id"], budget_seconds=300)
    # Chunk 1 is counted; chunk 2's rows written so far are not: they count with its
    # checkpoint.
    assert CHUNK_ROWS + 10 + 30 < ClientModel.count() < 2 * CHUNK_ROWS - 30
    assert preview(api, {}) == CHUNK_ROWS + 10
    monkeypatch.setattr(DynamoClients, "create_many", real_create)
    monkeypatch.setattr(DynamoImports, "save", dies_at_chunk_2s_checkpoint)
    with pytest.raises(TimeoutError):
        services.imports.run(created["id"], budget_seconds=300)
    assert ClientModel.count() == 2 * CHUNK_ROWS - 1  # chunk 2 written, but its broken row
    assert preview(api, {}) == CHUNK_ROWS + 10
    monkeypatch.setattr(DynamoImports, "save", real_save)
    services.imports.run(created["id"], budget_seconds=300)

    done = status(api, created["id"])
    assert (done["status"], done["rows"]) == ("done", total)
    assert (done["created"], done["updated"], done["rejected"]) == (total - 11, 10, 1)
    assert ClientModel.count() == total - 1
    assert preview(api, {}) == total - 1
    assert preview(api, {"codes": ["1"]}) == 0
    assert preview(api, {"tags": ["old"]}) == 0
    imported = [n for n in range(total) if n != 170]
    for code in ("90", "91", "92"):
        for tag in ("t0", "t1"):
            expected = sum(1 for n in imported if f"9{n % 3}" == code and f"t{n % 2}" == tag)
            assert preview(api, {"codes": [code], "tags": [tag]}) == expected


def test_a_chunk_moving_more_counters_than_a_checkpoint_takes_is_checkpointed_in_parts(
    api: Api, services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every row its own code and tag: 3 counters each, and everyone's.
    total = CHUNK_ROWS + 50
    real_save = DynamoImports.save
    moved: list[int] = []

    def spy(self: DynamoImports, record: Any, now_ms: int, counts: Any = None) -> Any:
        moved.append(len(counts or {}))
        return real_save(self, record, now_ms, counts)

    monkeypatch.setattr(DynamoImports, "save", spy)
    body = HEADER + "".join(row(n, code=f"c{n}", tag=f"t{n}") for n in range(total))
    result = run_import(api, services, body)
    assert (result["status"], result["rows"], result["created"]) == ("done", total, total)
    assert max(moved) <= CHECKPOINT_COUNTERS
    assert sum(1 for n in moved if n) == -(-total // ((CHECKPOINT_COUNTERS - 1) // 3))
    assert preview(api, {}) == total
    assert all(preview(api, {"codes": [f"c{n}"], "tags": [f"t{n}"]}) == 1 for n in (0, 149))


def test_a_phone_claimed_while_its_chunk_is_written_sends_the_chunks_creates_one_by_one(
    api: Api, services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The API creates a client with one of the file's new phones just before the chunk's
    # new clients are written together: that transaction is refused, its rows go one by
    # one, and that row updates the API's client.
    real_create = DynamoClients.create_many
    refused: list[bool] = []

    def api_first(self: DynamoClients, rows: Any, now: Any) -> bool:
        if not refused:
            body = {"phone": row(5)[:11], "code": "1", "tag": "api", "utc": "UTC"}
            assert api.post("/api/clients/", body).status_code == 201
        refused.append(not real_create(self, rows, now))
        return not refused[-1]

    monkeypatch.setattr(DynamoClients, "create_many", api_first)
    result = run_import(api, services, HEADER + "".join(row(n, code="900") for n in range(40)))
    assert refused == [True]  # 40 new clients: one transaction
    assert (result["created"], result["updated"], result["rejected"]) == (39, 1, 0)
    assert clients(api)[row(5)[:11]]["code"] == "900"
    assert ClientModel.count() == 40
    assert preview(api, {}) == 40
    assert preview(api, {"codes": ["1"]}) == 0
    assert preview(api, {"codes": ["900"]}) == 40


# --- hardening: a file too large, an import never uploaded, a file gone ---------------


def test_a_file_over_the_size_limit_fails_the_import_before_any_row(
    api: Api, services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Anyone holding the upload URL may PUT up to S3's 5 GB: the import reads the size
    # first and refuses what is over the limit, leaving the file to the lifecycle.
    body = HEADER + "".join(row(n) for n in range(10))
    monkeypatch.setattr(services.imports, "_max_bytes", len(body) - 1)
    created = start(api)
    put(created["upload_url"], body)
    drain(services)
    result = status(api, created["id"])
    assert (result["status"], result["rows"]) == ("failed", 0)
    [error] = result["errors"]
    assert (error["line"], error["field"]) == (1, "file")
    assert f"{len(body):,} bytes, over the limit of {len(body) - 1:,}" in error["message"]
    assert ClientModel.count() == 0
    files = services.import_files
    assert files.head(f"imports/{created['id']}.csv") is not None  # nothing deleted
    monkeypatch.setattr(services.imports, "_max_bytes", len(body))
    assert run_import(api, services, body)["created"] == 10  # at the limit: read


def test_an_import_never_uploaded_answers_failed_once_its_url_expired(
    api: Api, services: Any, clock: Any
) -> None:
    created = start(api)
    url_seconds = services.settings.import_url_seconds
    clock.advance(seconds=url_seconds + UPLOAD_GRACE_SECONDS - 1)
    assert status(api, created["id"])["status"] == "waiting_upload"
    clock.advance(seconds=1)
    result = status(api, created["id"])
    assert (result["status"], result["rows"]) == ("failed", 0)
    [error] = result["errors"]
    assert (error["field"], error["line"]) == ("file", 1)
    assert "upload URL expired" in error["message"]
    # A late event finds it failed as answered, and writes it so.
    services.imports.run(created["id"], budget_seconds=300)
    stored = DynamoImports().get(created["id"])
    assert stored is not None and stored.status.value == "failed"


def test_import_records_expire_through_the_ttl_a_week_after_their_last_change(
    api: Api, services: Any, clock: Any
) -> None:
    created = start(api)
    name = f"import#{created['id']}"
    first = ImportModel.get(name).expires_at
    assert first == clock.now + timedelta(days=KEEP_DAYS)
    clock.advance(seconds=60)
    put(created["upload_url"], HEADER + row(1))
    drain(services)
    assert ImportModel.get(name).expires_at == clock.now + timedelta(days=KEEP_DAYS)


def test_a_job_redriven_after_the_lifecycle_removed_its_file_fails_the_import(
    api: Api, services: Any
) -> None:
    created = start(api)
    put(created["upload_url"], HEADER + "".join(row(n) for n in range(2 * CHUNK_ROWS)))
    services.imports.run(created["id"], budget_seconds=0)  # a chunk, its next job queued
    files = services.import_files
    files.client.delete_object(Bucket=files.bucket, Key=f"imports/{created['id']}.csv")
    assert drain(services) == 2  # the file's event (already running) and the job
    result = status(api, created["id"])
    assert (result["status"], result["rows"]) == ("failed", CHUNK_ROWS)
    assert "removed" in result["errors"][-1]["message"]


def test_a_refused_read_is_not_taken_for_a_missing_file(
    api: Api, services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # S3 answers 403 for a missing key to a caller that may not list it: the import
    # function may list imports/ (tests/infra checks the grant), so a 403 is a refusal,
    # raised (the job goes back to the queue, then the dead-letter queue and its alarm).
    created = start(api)
    put(created["upload_url"], HEADER + row(1))
    files = services.import_files
    denied = ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadObject")

    def refuse(**_: Any) -> Any:
        raise denied

    monkeypatch.setattr(files.client, "head_object", refuse)
    with pytest.raises(ClientError):
        services.imports.run(created["id"], budget_seconds=300)
    assert status(api, created["id"])["status"] == "waiting_upload"


def test_a_stale_report_part_of_a_retried_chunk_without_errors_is_not_joined(
    api: Api, services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chunk 2's first attempt rejects a row (a client that kept changing, say), writes
    # its report part, then dies before its checkpoint; applied again it has no errors.
    total = 2 * CHUNK_ROWS + 50
    lines = [row(n) for n in range(total)]
    lines[10] = "broken\n"  # chunk 1: a real rejection, in the report
    created = start(api)
    put(created["upload_url"], HEADER + "".join(lines))
    real_apply, real_save = services.imports._apply, DynamoImports.save
    attempts: list[int] = []

    def flaky_apply(import_id: int, columns: Any, batch: Any) -> Any:
        result, counts, used = real_apply(import_id, columns, batch)
        attempts.append(batch[0].line)
        if attempts.count(batch[0].line) == 1 and batch[0].line == CHUNK_ROWS + 2:
            result.errors.append(RowError(batch[0].line, "phone", "transient"))
        return result, counts, used

    def crash_once(self: DynamoImports, record: Any, now_ms: int, counts: Any = None) -> Any:
        if record.progress.line == 2 * CHUNK_ROWS + 1 and attempts.count(CHUNK_ROWS + 2) == 1:
            raise TimeoutError("the invocation died here")
        return real_save(self, record, now_ms, counts)

    monkeypatch.setattr(services.imports, "_apply", flaky_apply)
    monkeypatch.setattr(DynamoImports, "save", crash_once)
    with pytest.raises(TimeoutError):
        services.imports.run(created["id"], budget_seconds=300)
    services.imports.run(created["id"], budget_seconds=300)  # the job comes back
    done = status(api, created["id"])
    assert (done["status"], done["rejected"]) == ("done", 1)
    report = requests.get(done["error_report_url"], timeout=10).text.splitlines()
    assert report[1:] == ['12,line,"has 1 values, the header has 4"']


def test_a_long_report_is_joined_a_part_an_invocation_each_checkpointed(
    api: Api, services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every row rejected: the report's parts are read and uploaded in parts of a
    # multipart upload, the import's time running out after each (its next job queued).
    monkeypatch.setattr("moto.s3.models.S3_UPLOAD_PART_MIN_SIZE", 64)
    # A chunk's part is about 4,400 bytes: a report part takes two.
    monkeypatch.setattr(services.imports, "_part_bytes", 8000)
    body = HEADER + "".join(f"7{n:03d},900,,UTC\n" for n in range(6 * CHUNK_ROWS))
    monkeypatch.setattr(services.imports, "_monotonic", itertools.count(step=3600).__next__)
    created = start(api)
    put(created["upload_url"], body)
    # The event and 5 jobs: a chunk each; then 3 jobs: a report part of 2 chunks' each;
    # then the last: the upload completed.
    assert drain(services) == 1 + 5 + 3 + 1
    done = status(api, created["id"])
    assert (done["status"], done["rejected"]) == ("done", 6 * CHUNK_ROWS)
    record = DynamoImports().get(created["id"])
    assert record is not None and len(record.progress.report_parts) == 3
    report = requests.get(done["error_report_url"], timeout=10).text.splitlines()
    assert report[0] == "line,field,message"
    assert [int(line.split(",")[0]) for line in report[1:]] == list(range(2, 6 * CHUNK_ROWS + 2))


def test_a_report_upload_lost_midway_is_joined_again_from_the_start(
    api: Api, services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("moto.s3.models.S3_UPLOAD_PART_MIN_SIZE", 64)
    monkeypatch.setattr(services.imports, "_part_bytes", 8000)
    monkeypatch.setattr(services.imports, "_monotonic", itertools.count(step=3600).__next__)
    body = HEADER + "".join(f"7{n:03d},900,,UTC\n" for n in range(4 * CHUNK_ROWS))
    created = start(api)
    put(created["upload_url"], body)
    record = DynamoImports().get(created["id"])
    while record is not None and not record.progress.report_parts:
        services.imports.run(created["id"], budget_seconds=300)  # a chunk or a part each
        record = DynamoImports().get(created["id"])
    assert record is not None and record.progress.upload is not None
    # The upload aborted (the lifecycle's rule after a day): S3 answers the next part
    # NoSuchUpload (moto fails otherwise), the bucket's PartsLost.
    files = services.import_files
    real_upload_part, lost = files.upload_part, []

    def aborted(key: str, upload_id: str, number: int, body: bytes) -> str:
        if upload_id == record.progress.upload:
            lost.append(number)
            raise PartsLost
        return str(real_upload_part(key, upload_id, number, body))

    monkeypatch.setattr(files, "upload_part", aborted)
    drain(services)  # the event and the jobs queued meanwhile
    assert lost == [2]
    done = status(api, created["id"])
    assert done["status"] == "done"
    report = requests.get(done["error_report_url"], timeout=10).text.splitlines()
    assert [int(line.split(",")[0]) for line in report[1:]] == list(range(2, 4 * CHUNK_ROWS + 2))
