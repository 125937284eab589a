"""A stand-in for the external send API on loopback (SPEC: the provider contract).

``POST /send/{msgId}`` with ``Authorization: Bearer <token>`` and
``{"id", "phone", "text"}`` answers ``{"code": 0, "message": "OK"}``, after a settable
latency and failing a settable share of calls with HTTP 500. Every call is recorded:
``GET /calls`` lists them, ``POST /config`` changes latency, failure rate or the
expected token at run time (``{"latency_ms": 50, "failure_rate": 0.2}``).
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_SEND_PATH = re.compile(r"/send/(\d+)")


@dataclass
class ProviderCall:
    msg_id: int
    body: Any
    authorization: str | None
    status: int
    at: float
    accepted: bool  # answered the success body


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # senders open many connections at once


@dataclass
class FakeProviderState:
    """What the fake provider does; tests and POST /config change it while it runs."""

    latency_ms: float = 0.0
    failure_rate: float = 0.0
    token: str | None = None  # when set, other tokens get 401
    mode: str = "ok"  # ok | garbage | timeout | status:<code> | chaos (a random mix)
    timeout_sleep_s: float = 30.0  # how long "timeout" mode holds the answer
    calls: list[ProviderCall] = field(default_factory=list)
    # Bumped by reset(): a call that arrived before it (a "timeout" call still held
    # when a test ends) is not recorded into the next test's calls.
    generation: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    rng: random.Random = field(default_factory=lambda: random.Random(7))  # noqa: S311

    def reset(self) -> None:
        with self.lock:
            self.latency_ms, self.failure_rate, self.mode = 0.0, 0.0, "ok"
            self.calls.clear()
            self.generation += 1

    def sends(self) -> list[ProviderCall]:
        with self.lock:
            return list(self.calls)


class _Handler(BaseHTTPRequestHandler):
    state: FakeProviderState
    quiet: bool

    def log_message(self, format: str, *args: Any) -> None:
        if not self.quiet:
            super().log_message(format, *args)

    def _answer(self, status: int, body: Any) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/calls":
            with self.state.lock:
                calls = [asdict(call) for call in self.state.calls]
            self._answer(200, {"calls": calls})
        else:
            self._answer(404, {"code": 404, "message": "not found"})

    def do_POST(self) -> None:  # noqa: PLR0912 - one branch per simulated behaviour
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path == "/config":
            update = json.loads(raw or b"{}")
            with self.state.lock:
                for key in ("latency_ms", "failure_rate", "token", "mode", "timeout_sleep_s"):
                    if key in update:
                        setattr(self.state, key, update[key])
            self._answer(200, {"ok": True})
            return
        match = _SEND_PATH.fullmatch(self.path)
        if not match:
            self._answer(404, {"code": 404, "message": "not found"})
            return
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        state = self.state
        answer: Any
        with state.lock:
            latency, failure_rate, token, mode, hold, generation = (
                state.latency_ms,
                state.failure_rate,
                state.token,
                state.mode,
                state.timeout_sleep_s,
                state.generation,
            )
            fail = state.rng.random() < failure_rate
        if latency:
            time.sleep(latency / 1000)
        if mode == "chaos":
            with state.lock:
                mode = state.rng.choice(["ok", "ok", "status:500", "garbage", "timeout"])
        authorization = self.headers.get("Authorization")
        if token is not None and authorization != f"Bearer {token}":
            status, answer = 401, {"code": 401, "message": "unauthorized"}
        elif mode == "timeout":
            time.sleep(hold)
            status, answer = 504, {"code": 504, "message": "late"}
        elif mode == "garbage":
            status, answer = 200, b"<html>not json</html>"
        elif mode.startswith("status:"):
            status = int(mode.split(":", 1)[1])
            answer = {"code": status, "message": "configured failure"}
        elif fail:
            status, answer = 500, {"code": 500, "message": "random failure"}
        elif not isinstance(body, dict) or body.get("id") != int(match.group(1)):
            status, answer = 400, {"code": 400, "message": "id in body differs from path"}
        else:
            status, answer = 200, {"code": 0, "message": "OK"}
        with state.lock:
            # A call held across a reset belongs to the state before it: not recorded.
            if state.generation == generation:
                state.calls.append(
                    ProviderCall(
                        int(match.group(1)),
                        body,
                        authorization,
                        status,
                        time.time(),
                        accepted=answer == {"code": 0, "message": "OK"},
                    )
                )
        if not self.quiet:
            print(f"[provider] send msgId={match.group(1)} -> {status}", flush=True)
        self._answer(status, answer)


class FakeProvider:
    """The fake provider as a supervisor part (a thread in this process)."""

    name = "fake provider"

    def __init__(
        self, port: int = 0, state: FakeProviderState | None = None, quiet: bool = False
    ) -> None:
        self.state = state or FakeProviderState()
        handler = type("Handler", (_Handler,), {"state": self.state, "quiet": quiet})
        self._server = _Server(("127.0.0.1", port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def alive(self) -> bool:
        return self._thread.is_alive()
