"""The real ``make run`` stack (conftest.py's ``stack``): called over HTTP, stopped cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from tests.conftest import ROOT
from tests.e2e.conftest import DEV_KEY, Stack, descendants, port_free, running


def keys_tool(stack: Stack, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "local.keys", *args],
        cwd=ROOT,
        env={**os.environ, "AWS_ENDPOINT_URL": stack.emulator_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_keys_guard_the_api_and_the_tool_creates_and_revokes_them(stack: Stack) -> None:
    clients = f"{stack.url}/api/clients/"
    assert requests.get(f"{stack.url}/api/health", timeout=10).status_code == 200
    missing = requests.get(clients, timeout=10)
    assert missing.status_code == 401
    assert missing.json()["error"] == "unauthorized"
    dev = {"Authorization": f"Bearer {DEV_KEY}"}
    assert requests.get(clients, headers=dev, timeout=10).status_code == 200

    created = keys_tool(stack, "create", "e2e-integrator")
    key = created.split("key:", 1)[1].split()[0]
    key_id = created.split("key_id:", 1)[1].split()[0]
    mine = {"Authorization": f"Bearer {key}"}
    assert requests.get(clients, headers=mine, timeout=10).status_code == 200
    assert key_id in keys_tool(stack, "list")
    assert key not in keys_tool(stack, "list")

    keys_tool(stack, "revoke", key_id)
    assert requests.get(clients, headers=mine, timeout=10).status_code == 401
    assert requests.get(clients, headers=dev, timeout=10).status_code == 200


def test_task_validation_and_status_over_http(stack: Stack) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {DEV_KEY}"
    tasks = f"{stack.url}/api/tasks/"
    now = datetime.now(UTC)
    iso = lambda moment: moment.isoformat().replace("+00:00", "Z")  # noqa: E731
    body = {"start_time": iso(now + timedelta(hours=1)), "end_time": iso(now), "text": "Hi"}
    reversed_times = session.post(tasks, json=body, timeout=10)
    assert reversed_times.status_code == 400
    assert list(reversed_times.json()["fields"]) == ["end_time"]
    naive = session.post(tasks, json={**body, "start_time": "2030-01-01T09:00:00"}, timeout=10)
    assert naive.status_code == 400
    future = {**body, "end_time": iso(now + timedelta(hours=2))}
    created = session.post(tasks, json=future, timeout=10)
    assert created.status_code == 201
    assert created.json()["status"] == "scheduled"
    due = {**future, "start_time": iso(now - timedelta(minutes=1))}
    assert session.post(tasks, json=due, timeout=10).json()["status"] == "running"


def test_a_due_mailing_reaches_the_fake_provider(stack: Stack) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {DEV_KEY}"
    for n, code in enumerate(["900", "900", "901"]):
        body = {"phone": f"7900000000{n}", "code": code, "tag": "", "utc": "Europe/Moscow"}
        assert session.post(f"{stack.url}/api/clients/", json=body, timeout=10).status_code == 201
    now = datetime.now(UTC)
    task = {
        "start_time": now.isoformat(),
        "end_time": (now + timedelta(hours=1)).isoformat(),
        "text": "Hello from e2e",
        "filter": {"codes": ["900"]},
    }
    created = session.post(f"{stack.url}/api/tasks/", json=task, timeout=10)
    assert created.status_code == 201
    task_id = created.json()["id"]

    def calls() -> list[dict[str, Any]]:
        return list(requests.get(f"{stack.provider_url}/calls", timeout=5).json()["calls"])

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(calls()) < 2:
        time.sleep(0.2)
    time.sleep(3)  # a few more ticks: nothing else may be sent
    sends = calls()
    assert len(sends) == 2, sends
    assert {call["msg_id"] for call in sends} == {task_id * 10**10 + 1, task_id * 10**10 + 2}
    # Statistics: counts on the general list, messages with client ids in the detail.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        general = session.get(f"{stack.url}/api/tasks/stats", timeout=10).json()
        (row,) = [item for item in general["items"] if item["id"] == task_id]
        if row["messages"]["sent"] == 2:
            break
        time.sleep(0.3)
    assert row["total"] == 2
    assert row["messages"] == {
        "pending": 0,
        "sent": 2,
        "failed": 0,
        "expired": 0,
        "cancelled": 0,
        "suppressed": 0,
    }
    detail = session.get(f"{stack.url}/api/tasks/{task_id}/stats", timeout=10).json()
    assert sorted(item["client_id"] for item in detail["items"]) == [1, 2]
    assert {item["status"] for item in detail["items"]} == {"sent"}

    # A provider that fails every call never slows the API down.
    requests.post(f"{stack.provider_url}/config", json={"failure_rate": 1.0}, timeout=5)
    started = time.monotonic()
    again = session.post(f"{stack.url}/api/tasks/", json={**task, "text": "Again"}, timeout=10)
    assert again.status_code == 201
    assert time.monotonic() - started < 3
    assert session.get(f"{stack.url}/api/clients/", timeout=10).status_code == 200


def test_a_test_send_from_the_api_process_reaches_the_fake_provider(stack: Stack) -> None:
    """The API's own process calls the provider for a test send (README, "Test sends"):
    ``make run`` gives it the fake provider's URL and token, as the sender has them."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {DEV_KEY}"
    now = datetime.now(UTC)
    task = {
        "start_time": (now + timedelta(hours=1)).isoformat(),
        "end_time": (now + timedelta(hours=2)).isoformat(),
        "text": "Test of e2e",
    }
    task_id = session.post(f"{stack.url}/api/tasks/", json=task, timeout=10).json()["id"]
    answer = session.post(
        f"{stack.url}/api/tasks/{task_id}/test", json={"phones": ["79000000001"]}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"results": [{"phone": "79000000001", "status": "sent", "error": None}]}
    (call,) = requests.get(f"{stack.provider_url}/calls", timeout=5).json()["calls"]
    assert call["msg_id"] == 9 * 10**18 + 1
    assert call["body"] == {"id": call["msg_id"], "phone": 79000000001, "text": "Test of e2e"}


def test_client_directory_over_http_then_clean_stop(stack: Stack) -> None:
    api = f"{stack.url}/api/clients/"
    ann = {"phone": "79001234567", "code": "900", "tag": "vip", "utc": "Europe/Moscow"}
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {DEV_KEY}"

    created = session.post(api, json=ann, timeout=10)
    assert created.status_code == 201, created.text
    client_id = created.json()["id"]
    assert isinstance(client_id, int)

    assert session.post(api, json=ann, timeout=10).status_code == 409
    bad_phone = session.post(api, json={**ann, "phone": "89001234567"}, timeout=10)
    assert bad_phone.status_code == 400
    assert "phone" in bad_phone.json()["fields"]
    bad_zone = session.post(api, json={**ann, "utc": "Mars/Olympus"}, timeout=10)
    assert bad_zone.status_code == 400

    patched = session.patch(f"{api}{client_id}", json={"tag": "gold"}, timeout=10)
    assert patched.status_code == 200
    assert patched.json()["tag"] == "gold"
    assert session.delete(f"{api}{client_id}", timeout=10).status_code == 204
    assert session.get(f"{api}{client_id}", timeout=10).status_code == 404

    # SIGTERM to the whole group, as a terminal or a process manager would send it.
    children = descendants(stack.process.pid)
    assert len(children) >= 2, "expected the emulator and the API as child processes"
    os.killpg(stack.process.pid, signal.SIGTERM)
    try:
        stack.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"make run did not stop on SIGTERM:\n{stack.log.read_text()}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(running(pid) for pid in children):
        time.sleep(0.1)
    assert not [pid for pid in children if running(pid)], stack.log.read_text()
    assert all(port_free(port) for port in stack.ports)
    assert "stopping aws emulator" in stack.log.read_text()


def smoke(stack: Stack, key: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.smoke", stack.url],
        cwd=ROOT,
        env={**os.environ, "NOTIFY_KEY": key},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_smoke_test_of_the_deploy_guide_passes_and_leaves_nothing(stack: Stack) -> None:
    passed = smoke(stack, DEV_KEY)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert [line.split()[0] for line in passed.stdout.splitlines()] == ["ok"] * 5
    dev = {"Authorization": f"Bearer {DEV_KEY}"}
    for listing in ("clients", "tasks"):
        answer = requests.get(f"{stack.url}/api/{listing}/", headers=dev, timeout=10)
        assert answer.json()["items"] == [], f"the smoke test left {listing} behind"
    refused = smoke(stack, "nk_not-a-key")
    assert refused.returncode == 1
    assert "FAIL create and read a client" in refused.stdout, refused.stdout
