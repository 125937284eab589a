"""Bulk import and export (SPEC, "Bulk import and export") on the real ``make run`` stack.

One test: a CSV file goes with plain ``curl -T`` to the URL the API gave (the
emulator's S3), the emulator tells the import queue, the stack's runner hands the event
to the import handler, and ``GET /api/imports/{id}`` is polled until ``done``. Then a
mailing to 100 of the imported clients (their own operator code) reaches each of them
once, and its export, downloaded with ``curl``, holds a row for each. The import runs
at about 160 rows a second on the emulator (a shared 2-core machine; 20 before a
chunk's new clients went 50 to a transaction), so ``make test`` imports the issue's
10,000 rows (62 s of import, about 100 s in all); ``IMPORT_E2E_ROWS`` sets another
size.
"""

from __future__ import annotations

import csv
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from tests.e2e.conftest import Stack
from tests.e2e.test_engine_faults import Api, Provider, accepted_twice, wait_for

ROWS = int(os.environ.get("IMPORT_E2E_ROWS", "10000"))
AUDIENCE = 100  # imported clients with the code the mailing targets
CODE = "imp"
BAD_LINES = (ROWS // 5 + 1, ROWS * 3 // 4 + 3)  # 1-based lines of the file (header: 1)


def write_file(path: Path) -> dict[str, str]:
    """The file and the phones of the mailing's audience, by phone."""
    audience: dict[str, str] = {}
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("phone,code,tag,utc\r\n")
        for n in range(ROWS):
            line = n + 2
            phone = f"7920{n:07d}"
            if line in BAD_LINES:
                out.write(f"{phone},900,,Nowhere/Zone\r\n")
                continue
            code = CODE if n % (ROWS // AUDIENCE) == 0 else f"9{n % 7:02d}"
            if code == CODE:
                audience[phone] = code
            out.write(f'{phone},{code},"imported, {n % 5}",Europe/Moscow\r\n')
    return audience


def test_a_csv_file_uploaded_with_curl_is_imported_and_mailed(stack: Stack, tmp_path: Path) -> None:
    api = Api(stack)
    audience = write_file(tmp_path / "clients.csv")
    assert len(audience) == AUDIENCE

    created = api.session.post(f"{api.url}/imports/", json={"format": "csv"}, timeout=30)
    assert created.status_code == 201, created.text
    upload = created.json()
    assert upload["upload_url"].startswith(stack.emulator_url)
    started = time.monotonic()
    curl = subprocess.run(
        ["curl", "-sS", "-f", "-T", str(tmp_path / "clients.csv"), upload["upload_url"]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert curl.returncode == 0, curl.stderr

    def finished() -> dict[str, object] | None:
        body = api.session.get(f"{api.url}/imports/{upload['id']}", timeout=30).json()
        return body if body["status"] in {"done", "failed"} else None

    result = wait_for("the import is done", finished, within=1500)
    took = time.monotonic() - started
    print(f"imported {ROWS} rows in {took:.0f} s: {ROWS / took:.0f} rows/s")
    assert result["status"] == "done", result
    assert (result["rows"], result["created"], result["updated"], result["rejected"]) == (
        ROWS,
        ROWS - len(BAD_LINES),
        0,
        len(BAD_LINES),
    )
    assert [(e["line"], e["field"]) for e in result["errors"]] == [  # type: ignore[union-attr]
        (line, "utc") for line in BAD_LINES
    ]
    report = requests.get(str(result["error_report_url"]), timeout=30)
    assert report.status_code == 200
    assert report.text.splitlines()[1:] == [
        f"{line},utc,{result['errors'][0]['message']}"  # type: ignore[index]
        for line in BAD_LINES
    ]

    # The imported clients are the directory's: a mailing to their code reaches each once.
    now = datetime.now(UTC)
    task = api.session.post(
        f"{api.url}/tasks/",
        json={
            "start_time": now.isoformat().replace("+00:00", "Z"),
            "end_time": (now + timedelta(minutes=10)).isoformat().replace("+00:00", "Z"),
            "text": "imported",
            "filter": {"codes": [CODE]},
        },
        timeout=60,
    )
    assert task.status_code == 201, task.text
    provider = Provider(stack)

    def all_sent() -> bool:
        sent = {str(c["phone"]) for c in provider.calls_of(task.json()["id"]) if c["accepted"]}
        return sent == set(audience)

    wait_for("every imported client of the code got the message", all_sent, within=180)
    assert accepted_twice(provider.calls_of(task.json()["id"])) == {}

    # Its export, downloaded with plain curl: one row a message, each its client's phone.
    task_id = task.json()["id"]

    def all_recorded() -> bool:
        stats = api.session.get(f"{api.url}/tasks/{task_id}/stats", timeout=60).json()
        return bool(stats["messages"]["sent"] == AUDIENCE)

    wait_for("every message recorded as sent", all_recorded, within=120)
    export = api.session.post(f"{api.url}/exports/", json={"task_id": task_id}, timeout=60)
    assert export.status_code == 201, export.text

    def exported() -> dict[str, object] | None:
        read = api.session.get(f"{api.url}/exports/{export.json()['id']}", timeout=60).json()
        return read if read["status"] != "running" else None

    done = wait_for("the export is done", exported, within=120)
    assert (done["status"], done["rows"]) == ("done", AUDIENCE), done
    download = subprocess.run(
        ["curl", "-sS", "-f", "-o", str(tmp_path / "messages.csv"), str(done["download_url"])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert download.returncode == 0, download.stderr
    rows = list(csv.DictReader((tmp_path / "messages.csv").open(newline="")))
    assert {row["phone"] for row in rows} == set(audience)
    assert len(rows) == AUDIENCE and {row["status"] for row in rows} == {"sent"}
