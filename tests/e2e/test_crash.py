"""``make run`` killed with SIGKILL leaves nothing behind; a port already taken stops start-up.

The emulator and the API server run in sessions of their own (so that a Ctrl-C reaches
the supervisor alone, which stops them in order); they must still die with the
supervisor when it is killed outright, or they keep the ports and a restart answers
with the orphans' health routes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from local.supervisor import free_port
from tests.conftest import ROOT
from tests.e2e.conftest import (
    DEV_KEY,
    descendants,
    port_free,
    running,
    start_stack,
    stop_stack,
)

GONE_WITHIN = 5.0  # seconds for every process of a killed stack to exit and free its ports
FAIL_WITHIN = 20.0  # seconds for a start-up on a taken port to give up


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def wait_until_gone(pids: set[int], ports: tuple[int, ...]) -> tuple[list[str], list[int]]:
    """Wait up to GONE_WITHIN seconds; answer what is still running and which ports are held."""
    deadline = time.monotonic() + GONE_WITHIN
    while True:
        alive = [f"{pid}: {command_line(pid)}" for pid in sorted(pids) if running(pid)]
        held = [port for port in ports if not port_free(port)]
        if (not alive and not held) or time.monotonic() > deadline:
            return alive, held
        time.sleep(0.1)


def kill_leftovers(pids: set[int]) -> None:
    for pid in pids:
        if running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("target", ["supervisor", "make group"])
def test_sigkill_leaves_no_process_and_the_next_stack_starts_on_the_same_ports(
    tmp_path: Path, target: str
) -> None:
    first = start_stack(tmp_path / "first.log", {"TICK_SECONDS": "1"})
    pids = descendants(first.process.pid)
    try:
        (supervisor,) = [pid for pid in pids if "local.run" in command_line(pid)]
        assert len(pids) >= 3, "expected the supervisor, the emulator and the API server"
        if target == "supervisor":
            os.kill(supervisor, signal.SIGKILL)
        else:
            os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=10)
        alive, held = wait_until_gone(pids, first.ports)
        assert not alive, f"still running after SIGKILL of the {target}: {alive}"
        assert not held, f"ports still held after SIGKILL of the {target}: {held}"
    finally:
        kill_leftovers(pids)

    second = start_stack(tmp_path / "second.log", {"TICK_SECONDS": "1"}, first.ports)
    try:
        # Its own process answers: the supervisor says it is running and the key works.
        assert requests.get(f"{second.url}/api/health", timeout=10).status_code == 200
        dev = {"Authorization": f"Bearer {DEV_KEY}"}
        assert requests.get(f"{second.url}/api/clients/", headers=dev, timeout=10).ok
        # The banner follows the last parts' start, a moment after the health route.
        deadline = time.monotonic() + 10
        while "Notification service is running" not in second.log.read_text():
            assert time.monotonic() < deadline, second.log.read_text()
            time.sleep(0.1)
    finally:
        stop_stack(second.process)
    assert all(port_free(port) for port in second.ports)


class _Healthy(BaseHTTPRequestHandler):
    """Another process's server: 200 to everything, as an orphaned stack would answer."""

    def do_GET(self) -> None:
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        return None


@contextlib.contextmanager
def held_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("which", ["PORT", "MOTO_PORT", "FAKE_PROVIDER_PORT"])
def test_start_up_fails_fast_naming_a_port_already_taken(tmp_path: Path, which: str) -> None:
    log = tmp_path / "run.log"
    ports = {name: str(free_port()) for name in ("PORT", "MOTO_PORT", "FAKE_PROVIDER_PORT")}
    with held_port() as port:
        ports[which] = str(port)
        env = {
            **os.environ,
            **ports,
            "API_KEY": DEV_KEY,
            "TICK_SECONDS": "1",
            "NOTIFY_STATE_DIR": str(tmp_path / "state"),
        }
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["make", "--no-print-directory", "run"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            code = process.wait(timeout=FAIL_WITHIN)
        except subprocess.TimeoutExpired:
            pytest.fail(f"make run did not give up on the taken port {port}:\n{log.read_text()}")
        finally:
            stop_stack(process)
        output = log.read_text()
        assert code != 0, output
        assert f"port {port}" in output, output
        assert "in use" in output, output
        assert "Notification service is running" not in output, output
        # Nothing of the failed stack is left: the other ports are free again.
        others = [int(value) for name, value in ports.items() if name != which]
        _, held = wait_until_gone(set(), tuple(others))
        assert not held, output
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # still ours
