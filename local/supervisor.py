"""A small supervisor: start parts in order, watch them, stop them all in reverse.

A part is anything with ``start``/``stop``/``alive``: a child process (the AWS
emulator, ``chalice local``) or a thread in this process (the schedule runner, the
fake provider). If any part dies, or the supervisor gets SIGINT/SIGTERM, every part
started so far is stopped and its ports freed. Child processes also die with the
supervisor when it is killed outright (``kill -9``; see ``local/die_with_parent.py``),
and start-up stops at once, naming the port, when a part's port is already taken:
otherwise another process (an orphaned stack) would answer the health checks.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

ROOT = Path(__file__).resolve().parent.parent


class Part(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def alive(self) -> bool: ...


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PortInUse(RuntimeError):
    """A part's port is already taken by another process."""


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether binding ``host:port`` fails as a server would (``SO_REUSEADDR`` set, so a
    connection of a process that just exited, in TIME_WAIT, does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def check_ports(ports: Mapping[int, str]) -> None:
    """Raise ``PortInUse`` naming every port (mapped to what it is for) already taken."""
    taken = [f"port {port} ({what})" for port, what in ports.items() if port and port_in_use(port)]
    if taken:
        raise PortInUse(
            f"{', '.join(taken)} already in use by another process"
            " (a stack still running?): stop it or choose other ports"
        )


def wait_http(url: str, timeout: float, alive: Callable[[], bool] = lambda: True) -> None:
    """Wait until ``url`` answers any HTTP status, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"process serving {url} exited during start-up")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback URL we built
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


class ChildProcess:
    """A child in its own process group, so stopping it stops its children too.

    Its own session keeps a Ctrl-C in the terminal for the supervisor, which stops the
    parts in order; so on Linux it is started through ``local.die_with_parent`` and gets
    SIGTERM when the supervisor dies, even by SIGKILL. The kernel sends that signal when
    the *thread* that started the child exits: start children from the main thread.
    ``ports`` are the ports it will listen on: start-up fails, naming them, when one is
    already taken, rather than taking another process's answers on ``ready_url``.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        ready_url: str | None = None,
        ready_timeout: float = 60.0,
        log_file: Path | None = None,
        ports: Sequence[int] = (),
    ) -> None:
        self.name = name
        self.ports = tuple(ports)
        self._argv = list(argv)
        self._env = dict(env)
        self._ready_url = ready_url
        self._ready_timeout = ready_timeout
        self._log_file = log_file
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _command(self) -> list[str]:
        if not sys.platform.startswith("linux"):
            return self._argv
        if threading.current_thread() is not threading.main_thread():
            # The death signal would fire when this thread ends, not the supervisor.
            raise RuntimeError(f"{self.name}: child processes start from the main thread")
        return [sys.executable, "-m", "local.die_with_parent", str(os.getpid()), *self._argv]

    def start(self) -> None:
        check_ports(dict.fromkeys(self.ports, self.name))
        output = None
        if self._log_file is not None:
            self._log_file.parent.mkdir(parents=True, exist_ok=True)
            output = self._log_file.open("ab")
        try:
            self._proc = subprocess.Popen(
                self._command(),
                env=self._env,
                cwd=ROOT,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT if output else None,
            )
        finally:
            if output is not None:
                output.close()  # the child holds its own copy
        if self._ready_url:
            wait_http(self._ready_url, self._ready_timeout, self.alive)
            if not self.alive():  # the answer came from someone else
                raise RuntimeError(f"{self.name} exited during start-up")

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue


class Supervisor:
    def __init__(self, parts: Sequence[Part], out: Callable[[str], None] = print) -> None:
        self._parts = list(parts)
        self._started: list[Part] = []
        # A plain flag: setting a threading.Event from a signal handler can deadlock
        # when the signal lands while the main thread holds the Event's lock.
        self._stop_requested = False
        self._out = out

    def request_stop(self, *_: object) -> None:
        self._stop_requested = True

    def start(self) -> None:
        # Every port up front: fail before starting anything, not after the first parts.
        ports = {port: part.name for part in self._parts for port in getattr(part, "ports", ())}
        check_ports(ports)
        for part in self._parts:
            if self._stop_requested:
                return
            self._out(f"[supervisor] starting {part.name}")
            part.start()
            self._started.append(part)

    def wait(self, poll: float = 0.5) -> int:
        """Block until a stop is requested (0) or a part dies (1)."""
        while not self._stop_requested:
            time.sleep(poll)
            for part in self._started:
                if not part.alive():
                    self._out(f"[supervisor] {part.name} exited unexpectedly")
                    return 1
        return 0

    def stop(self) -> None:
        while self._started:
            part = self._started.pop()
            self._out(f"[supervisor] stopping {part.name}")
            try:
                part.stop()
            except Exception as error:
                self._out(f"[supervisor] {part.name} did not stop cleanly: {error}")

    def run(self, on_ready: Callable[[], None]) -> int:
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)
        try:
            self.start()
            on_ready()
            return self.wait()
        except Exception as error:
            print(f"[supervisor] start-up failed: {error}", file=sys.stderr)
            return 1
        finally:
            self.stop()
