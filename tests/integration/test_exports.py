"""Exports of a task's messages as CSV (SPEC, "Bulk import and export") on moto: the API
queues the export's job on the import queue, the queue's messages go to
``app.import_files`` as Lambda's mapping would hand them, and the file is read back
through the pre-signed URL the API answers."""

from __future__ import annotations

import csv
import io
import itertools
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from chalicelib.domain.exports import COLUMNS, PART_BYTES
from chalicelib.storage.models import ClientModel, MessageModel
from tests.conftest import Api
from tests.integration.test_imports import drain, queued

HEADER = ",".join(COLUMNS)
CREATED = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _bucket_test_event_handled(services: Any) -> None:
    """S3 (and moto) sends a test event when the bucket's notifications are set up."""
    assert drain(services) == 1


def task(api: Api) -> int:
    body = {
        "start_time": "2026-11-28T13:00:00Z",
        "end_time": "2026-11-28T14:00:00Z",
        "text": "Hello",
    }
    response = api.post("/api/tasks/", body)
    assert response.status_code == 201, response.body
    return int(response.json_body["id"])


def messages(task_id: int, count: int, **fields: Any) -> list[MessageModel]:
    """A finished task's messages, written as the engine leaves them."""
    items = []
    for n in range(1, count + 1):
        sent = n % 3 != 0
        values: dict[str, Any] = {
            "id": task_id * 10**9 + n,
            "status": "sent" if sent else "failed",
            "created_at": CREATED,
            "sent_at": CREATED + timedelta(seconds=n) if sent else None,
            "attempts": 1 if sent else 3,
            "last_error": None if sent else "HTTP 400",
            "phone": f"7900{n:07d}",
            "utc": "UTC",
        }
        values.update(fields)
        items.append(MessageModel(task_id, n, **values))
    with MessageModel.batch_write() as batch:
        for item in items:
            batch.save(item)
    return items


def export(api: Api, services: Any, task_id: int) -> dict[str, Any]:
    created = api.post("/api/exports/", {"task_id": task_id})
    assert created.status_code == 201, created.body
    assert created.json_body == {"id": created.json_body["id"], "status": "running"}
    drain(services)
    return read(api, created.json_body["id"])


def read(api: Api, export_id: int) -> dict[str, Any]:
    response = api.get(f"/api/exports/{export_id}")
    assert response.status_code == 200, response.body
    return dict(response.json_body)


def download(url: str) -> str:
    answer = requests.get(url, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/csv")
    return answer.content.decode()


def expected_rows(items: list[MessageModel]) -> list[dict[str, str]]:
    def instant(value: datetime | None) -> str:
        return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""

    return [
        {
            "id": str(m.id),
            "client_id": str(m.client_id),
            "phone": str(m.phone),
            "status": m.status,
            "created_at": instant(m.created_at),
            "sent_at": instant(m.sent_at),
            "attempts": str(m.attempts),
            "last_error": m.last_error or "",
        }
        for m in items
    ]


def parsed(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


# --- the routes -------------------------------------------------------------------------


def test_an_export_of_a_finished_task_holds_every_message_with_its_phone(
    api: Api, services: Any
) -> None:
    task_id = task(api)
    items = messages(task_id, 250)
    done = export(api, services, task_id)
    assert done["status"] == "done" and done["rows"] == 250
    assert "X-Amz-Signature=" in done["download_url"]
    text = download(done["download_url"])
    assert text.split("\r\n")[0] == HEADER
    assert parsed(text) == expected_rows(items)
    # A fresh pre-signed URL at each read, valid for an hour.
    assert "X-Amz-Expires=3600" in read(api, done["id"])["download_url"]


def test_a_message_stored_without_its_phone_gets_its_clients(api: Api, services: Any) -> None:
    client = api.post(
        "/api/clients/", {"phone": "79005550001", "code": "900", "tag": "", "utc": "UTC"}
    ).json_body
    task_id = task(api)
    MessageModel(
        task_id, client["id"], id=1, status="pending", created_at=CREATED, attempts=0
    ).save()
    done = export(api, services, task_id)
    (row,) = parsed(download(done["download_url"]))
    assert (row["client_id"], row["phone"]) == (str(client["id"]), "79005550001")
    assert ClientModel.get(client["id"]).phone == "79005550001"


def test_an_empty_task_gives_the_header_alone(api: Api, services: Any) -> None:
    done = export(api, services, task(api))
    assert (done["status"], done["rows"]) == ("done", 0)
    assert download(done["download_url"]) == HEADER + "\r\n"


def test_before_done_there_is_no_download_url(api: Api, services: Any) -> None:
    created = api.post("/api/exports/", {"task_id": task(api)}).json_body
    assert read(api, created["id"]) == {
        "id": created["id"],
        "status": "running",
        "rows": 0,
        "download_url": None,
    }


def test_an_unknown_or_deleted_task_is_404_and_queues_nothing(api: Api, services: Any) -> None:
    gone = task(api)
    assert api.delete(f"/api/tasks/{gone}").status_code == 204
    for task_id in (gone, 999):
        response = api.post("/api/exports/", {"task_id": task_id})
        assert response.status_code == 404, response.body
        assert response.json_body == {
            "error": "not_found",
            "message": f"Task {task_id} does not exist.",
        }
    assert queued(services) == []
    assert api.get("/api/exports/1").status_code == 404
    assert api.get("/api/exports/x").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "task_id"),
        ({"task_id": "1"}, "task_id"),
        ({"task_id": True}, "task_id"),
        ({"task_id": 1.5}, "task_id"),
        ({"task_id": 0}, "task_id"),
        ({"task_id": 2**64}, "task_id"),
        ({"task_id": None}, "task_id"),
        ({"task_id": 1, "format": "csv"}, "format"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(
    api: Api, services: Any, body: dict[str, Any], field: str
) -> None:
    task(api)
    response = api.post("/api/exports/", body)
    assert response.status_code == 400, response.body
    assert response.json_body["error"] == "validation_error"
    assert field in response.json_body["fields"]
    assert queued(services) == []


def test_a_body_that_is_not_an_object_is_400(api: Api, services: Any) -> None:
    for body in ([1], "1", None):
        assert api.post("/api/exports/", body).status_code == 400


# --- the worker ---------------------------------------------------------------------------


def small_parts(services: Any, monkeypatch: pytest.MonkeyPatch, size: int = 4096) -> None:
    """Parts of ``size`` bytes (moto's minimum lowered alike): the real minimum, 5 MiB,
    is the service's default and is exercised by the large export's test."""
    monkeypatch.setattr("moto.s3.models.S3_UPLOAD_PART_MIN_SIZE", size)
    monkeypatch.setattr(services.exports, "_part_bytes", size)
    monkeypatch.setattr(services.exports, "_page_rows", 20)


def test_a_stopped_export_carries_on_and_gives_the_same_bytes(
    api: Api, services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = task(api)
    items = messages(task_id, 400)
    small_parts(services, monkeypatch)
    whole = download(export(api, services, task_id)["download_url"])
    assert parsed(whole) == expected_rows(items)

    # Each invocation's time runs out after one part: it queues the export's next job.
    monkeypatch.setattr(services.exports, "_monotonic", itertools.count(step=3600).__next__)
    created = api.post("/api/exports/", {"task_id": task_id}).json_body
    jobs = drain(services)
    done = read(api, created["id"])
    assert done["rows"] == 400
    assert jobs > 3  # the first job, then one per part
    assert download(done["download_url"]) == whole


def test_a_redelivered_job_changes_nothing(
    api: Api, services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = task(api)
    items = messages(task_id, 300)
    small_parts(services, monkeypatch)
    created = api.post("/api/exports/", {"task_id": task_id}).json_body
    job = queued(services)[0]["Body"]
    budget = itertools.count(step=3600).__next__
    monkeypatch.setattr(services.exports, "_monotonic", budget)
    # A delivery that stops after a part, and the same job delivered again meanwhile:
    # both start from the same checkpoint; the second's part is the same bytes.
    first = services.exports.get(created["id"]).record
    services.exports.run(created["id"], 1.0)
    stale = services.exports.get(created["id"]).record
    assert stale.checkpoint.parts and stale.checkpoint != first.checkpoint
    monkeypatch.setattr(services.exports._exports, "get", lambda _id: first)
    assert services.exports.run(created["id"], 1.0) is None  # its checkpoint lost the race
    monkeypatch.undo()
    small_parts(services, monkeypatch)
    drain(services)
    done = read(api, created["id"])
    assert (done["status"], done["rows"]) == ("done", 300)
    assert parsed(download(done["download_url"])) == expected_rows(items)
    # The same job once more, after the end: nothing moves.
    assert services.exports.run(created["id"], 1.0) is None
    again = read(api, created["id"])
    assert {**again, "download_url": None} == {**done, "download_url": None}
    assert json.loads(job) == {"v": 1, "export": created["id"]}


def test_cells_that_a_spreadsheet_would_evaluate_are_escaped(api: Api, services: Any) -> None:
    task_id = task(api)
    errors = ['=HYPERLINK("http://x","y")', "+1", "-2", "@SUM(A1)", "\tx", "plain, quoted"]
    for n, error in enumerate(errors, start=1):
        MessageModel(
            task_id,
            n,
            id=n,
            status="failed",
            created_at=CREATED,
            attempts=1,
            last_error=error,
            phone="79001234567",
        ).save()
    text = download(export(api, services, task_id)["download_url"])
    assert [row["last_error"] for row in parsed(text)] == [
        '\'=HYPERLINK("http://x","y")',
        "'+1",
        "'-2",
        "'@SUM(A1)",
        "'\tx",
        "plain, quoted",
    ]


def test_a_large_export_is_a_multipart_upload_of_5_mib_parts(
    api: Api, services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = task(api)
    # ~1 KiB a row: 12 MiB of CSV, three parts at the real minimum part size.
    items = messages(task_id, 12_000, last_error="x" * 1000, status="failed")
    calls: list[str] = []
    client = services.import_files.client
    for name in ("put_object", "create_multipart_upload", "upload_part"):
        original = getattr(client, name)

        def recording(*args: Any, _name: str = name, _f: Any = original, **kw: Any) -> Any:
            calls.append(_name)
            return _f(*args, **kw)

        monkeypatch.setattr(client, name, recording)
    started = time.monotonic()
    done = export(api, services, task_id)
    seconds = time.monotonic() - started
    assert services.exports._part_bytes == PART_BYTES
    assert done["rows"] == 12_000
    assert calls == ["create_multipart_upload", "upload_part", "upload_part", "upload_part"]
    text = download(done["download_url"])
    assert len(text) > 2 * PART_BYTES
    assert parsed(text) == expected_rows(items)
    print(f"12,000 rows of 1 KiB in {seconds:.1f} s")
