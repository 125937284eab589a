"""Plain ``chalice local --stage local`` against ``make emulator``, as the README says.

The emulator listens on the port the ``local`` stage names (``DEFAULT_MOTO_PORT``), so this
test waits for that port to be free rather than picking another one; its run files go to
a temporary ``NOTIFY_STATE_DIR``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from local.run import DEFAULT_MOTO_PORT
from local.supervisor import free_port
from tests.conftest import ROOT
from tests.e2e.conftest import START_TIMEOUT, port_free, stop_stack

QUIET_SECONDS = 10.0


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _wait(ready: object, process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{what} exited:\n{log.read_text()}"
        if callable(ready) and ready():
            return
        time.sleep(0.2)
    pytest.fail(f"{what} did not start:\n{log.read_text()}")


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/api/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"MOTO_PORT", "AWS_ENDPOINT_URL"}}
    env.update(
        {"NOTIFY_STATE_DIR": str(tmp_path / "state"), "TICK_SECONDS": "1", "PYTHONUNBUFFERED": "1"}
    )
    return env


@pytest.fixture
def emulator(tmp_path: Path, environment: dict[str, str]) -> Iterator[Path]:
    """``make emulator``, on the stage's default port; yields its log."""
    deadline = time.monotonic() + 60
    while not port_free(DEFAULT_MOTO_PORT) and time.monotonic() < deadline:
        time.sleep(1)
    assert port_free(DEFAULT_MOTO_PORT), f"port {DEFAULT_MOTO_PORT} stays busy"
    log = tmp_path / "emulator.out"
    process = _start(["make", "--no-print-directory", "emulator"], environment, log)
    url_file = tmp_path / "state" / "emulator.url"
    try:
        _wait(url_file.exists, process, log, "make emulator")
        assert url_file.read_text() == f"http://127.0.0.1:{DEFAULT_MOTO_PORT}"
        yield log
        assert process.poll() is None, f"make emulator exited:\n{log.read_text()}"
    finally:
        stop_stack(process)


def test_chalice_local_serves_the_contract_without_restarts(
    tmp_path: Path, environment: dict[str, str], emulator: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "chalice.out"
    chalice = [str(ROOT / ".venv" / "bin" / "chalice"), "local", "--stage", "local"]
    process = _start([*chalice, "--port", str(port)], environment, log)
    try:
        _wait(lambda: _healthy(url), process, log, "chalice local")
        started = time.monotonic()
        created = subprocess.run(
            [sys.executable, "-m", "local.keys", "create", "e2e-chalice-local"],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        key = created.split("key:", 1)[1].split()[0]
        clients = f"{url}/api/clients/"

        mine = requests.get(clients, headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert mine.status_code == 200, mine.text
        assert mine.json()["items"] == []
        wrong = requests.get(clients, headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401
        assert wrong.json()["error"] == "unauthorized"
        assert wrong.json()["message"]
        missing = requests.get(clients, timeout=10)
        assert missing.status_code == 401

        while time.monotonic() - started < QUIET_SECONDS:
            assert _healthy(url), log.read_text()
            time.sleep(1)
        assert process.poll() is None, log.read_text()
        output = log.read_text()
        assert "Restarting" not in output, output
        assert output.count("Serving on") <= 1, output
    finally:
        stop_stack(process)
