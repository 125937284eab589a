"""The real ``make run`` stack for end-to-end tests: started in a subprocess, stopped cleanly.

``stack`` starts a fresh stack for each test (fresh ports, an empty emulator, the built-in
fake provider). A test changes the stack's environment with
``@pytest.mark.stack_env(RETRY_BASE_SECONDS="1", ...)``: those variables are added to
what ``make run`` gets (``TICK_SECONDS=1`` unless the marker says otherwise).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from selenium import webdriver

from local.supervisor import free_port
from tests.conftest import ROOT
from tests.e2e.browser import chromium

START_TIMEOUT = 120.0
DEV_KEY = "e2e-development-key-0123456789"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "stack_env(**variables): environment variables for the e2e `stack` fixture"
    )


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@dataclass
class Stack:
    url: str
    emulator_url: str
    provider_url: str
    process: subprocess.Popen[bytes]
    ports: tuple[int, ...]
    log: Path
    env: dict[str, str]  # what this test set on top of the usual environment


def start_stack(
    log: Path,
    extra: dict[str, str],
    ports: tuple[int, int, int] | None = None,
    *,
    env: dict[str, str] | None = None,
) -> Stack:
    """``make run`` in a session of its own, waited for until its health route answers 200.

    ``ports`` are the API, emulator and fake provider ports (free ones when not given)."""
    api_port, moto_port, provider_port = ports or (free_port(), free_port(), free_port())
    full_env = {
        **(env if env is not None else os.environ),
        "PORT": str(api_port),
        "MOTO_PORT": str(moto_port),
        "FAKE_PROVIDER_PORT": str(provider_port),
        "API_KEY": DEV_KEY,
        # Each stack its own run files and data (local/state.py): it starts empty.
        "NOTIFY_STATE_DIR": str(log.parent / "state"),
        **extra,
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{api_port}"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"make run exited during start-up:\n{log.read_text()}")
        try:
            if requests.get(f"{url}/api/health", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.2)
    else:
        stop_stack(process)
        pytest.fail(f"stack did not start:\n{log.read_text()}")
    return Stack(
        url=url,
        emulator_url=f"http://127.0.0.1:{moto_port}",
        provider_url=f"http://127.0.0.1:{provider_port}",
        process=process,
        ports=(api_port, moto_port, provider_port),
        log=log,
        env=extra,
    )


@pytest.fixture
def stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    marker = request.node.get_closest_marker("stack_env")
    extra = {
        "TICK_SECONDS": "1",
        **{k: str(v) for k, v in (marker.kwargs if marker else {}).items()},
    }
    stack = start_stack(tmp_path / "run.log", extra)
    try:
        yield stack
    finally:
        stop_stack(stack.process)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """Headless Chromium (``tests/e2e/browser.py``), closed after the test."""
    driver = chromium(tmp_path / "profile")
    try:
        yield driver
    finally:
        driver.quit()


def stop_stack(process: subprocess.Popen[bytes]) -> None:
    """Stop the stack and everything it started: SIGTERM to the make group, and the
    supervisor stops its parts (the emulator and the API run in sessions of their own;
    they also die with the supervisor if it is killed). Whatever is still left after
    that is killed by pid."""
    if process.poll() is not None:
        return
    children = descendants(process.pid)
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(running(pid) for pid in children):
        time.sleep(0.1)
    for pid in children:
        if running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
