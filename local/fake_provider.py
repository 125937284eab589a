"""A stand-in for the external send API on loopback (SPEC: the provider contract).

``POST /send/{msgId}`` with ``Authorization: Bearer <token>`` and
``{"id", "phone", "text"}`` answers ``{"code": 0, "message": "OK"}``, after a settable
latency and failing a settable share of calls with HTTP 500. Every call is recorded:
``GET /calls`` lists them, ``POST /config`` changes latency, failure rate or the
expected token at run time (``{"latency_ms": 50, "failure_rate": 0.2}``).

Faults for engine tests, also through ``POST /config`` (``GET /config`` shows them):

- ``{"rules": {"79000000001": {"fail_first": 2, "mode": "status:500"}}}``: per-phone
  rules; the phone's first ``fail_first`` calls (counted since the last reset) get the
  rule's mode, later ones succeed; without ``fail_first`` every call does. A rule may
  carry its own ``timeout_sleep_s``. Setting ``rules`` replaces them all (``{}`` clears).
- ``{"mix": {"ok": 0.5, "status:500": 0.25, "garbage": 0.1, "timeout": 0.15}}``: each
  call of a phone without a rule draws its mode from these weights (``null`` clears);
  ``{"seed": 7}`` re-seeds the draws, so a run is repeatable.

Modes: ``ok``, ``status:<code>`` (that HTTP status), ``garbage`` (HTTP 200 with a body
that is not JSON), ``timeout`` (holds the answer ``timeout_sleep_s`` seconds, then 504),
and, as the global ``mode`` only, ``chaos`` (a fixed random mix).
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
_STATUS_MODE = re.compile(r"status:([1-5]\d\d)")
_MODES = ("ok", "garbage", "timeout")


def valid_mode(mode: object) -> bool:
    """Whether ``mode`` is one a rule or a mix may use (``chaos`` is the global mode's)."""
    return isinstance(mode, str) and (mode in _MODES or bool(_STATUS_MODE.fullmatch(mode)))


@dataclass
class ProviderCall:
    msg_id: int
    body: Any
    authorization: str | None
    status: int
    at: float
    accepted: bool  # answered the success body
    phone: str | None = None  # from the body, as a string of digits
    mode: str = "ok"  # the behaviour this call got (after rules, mix and chaos)


@dataclass(frozen=True)
class PhoneRule:
    """How one phone is answered: ``mode`` for its first ``fail_first`` calls (all when None)."""

    mode: str
    fail_first: int | None = None
    timeout_sleep_s: float | None = None  # overrides the state's for this phone's holds

    @classmethod
    def parse(cls, raw: Any) -> PhoneRule:
        """A rule from its JSON form; ValueError when it is not one."""
        if not isinstance(raw, dict) or set(raw) - {"mode", "fail_first", "timeout_sleep_s"}:
            raise ValueError(f"a rule is {{mode, fail_first?, timeout_sleep_s?}}, not {raw!r}")
        mode, fail_first, hold = raw.get("mode"), raw.get("fail_first"), raw.get("timeout_sleep_s")
        if not valid_mode(mode):
            raise ValueError(f"unknown mode {mode!r}")
        if fail_first is not None and (type(fail_first) is not int or fail_first < 0):
            raise ValueError("fail_first must be a non-negative integer")
        if hold is not None and (not isinstance(hold, int | float) or hold < 0):
            raise ValueError("timeout_sleep_s must be a non-negative number")
        return cls(str(mode), fail_first, None if hold is None else float(hold))


def parse_mix(raw: Any) -> dict[str, float] | None:
    """Mode weights from their JSON form (None clears the mix); ValueError when invalid."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw:
        raise ValueError("mix is an object of mode: weight")
    mix: dict[str, float] = {}
    for mode, weight in raw.items():
        if not valid_mode(mode):
            raise ValueError(f"unknown mode {mode!r}")
        if not isinstance(weight, int | float) or weight < 0:
            raise ValueError(f"weight of {mode} must be a non-negative number")
        mix[str(mode)] = float(weight)
    if sum(mix.values()) <= 0:
        raise ValueError("mix weights must not all be zero")
    return mix


@dataclass(frozen=True)
class Plan:
    """What to do with one call: its mode, how long a timeout holds, a random failure."""

    mode: str
    hold_s: float
    fail: bool


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
    lock: threading.Lock = field(default_factory=threading.Lock)
    rng: random.Random = field(default_factory=lambda: random.Random(7))  # noqa: S311
    rules: dict[str, PhoneRule] = field(default_factory=dict)  # by phone, see PhoneRule
    mix: dict[str, float] | None = None  # mode weights for phones without a rule
    phone_calls: dict[str, int] = field(default_factory=dict)  # calls per phone since reset

    def reset(self) -> None:
        with self.lock:
            self.latency_ms, self.failure_rate, self.mode = 0.0, 0.0, "ok"
            self.calls.clear()
            self.rules.clear()
            self.mix = None
            self.phone_calls.clear()

    def sends(self) -> list[ProviderCall]:
        with self.lock:
            return list(self.calls)

    def configure(self, update: dict[str, Any]) -> None:
        """Apply a POST /config body: all of it, or nothing (ValueError) when invalid."""
        rules: dict[str, PhoneRule] | None = None
        if "rules" in update:
            if not isinstance(update["rules"] or {}, dict):
                raise ValueError("rules is an object of phone: rule")
            rules = {
                str(phone): PhoneRule.parse(raw) for phone, raw in (update["rules"] or {}).items()
            }
        mix = parse_mix(update["mix"]) if "mix" in update else None
        seed = update.get("seed")
        if seed is not None and type(seed) is not int:
            raise ValueError("seed must be an integer")
        with self.lock:
            for key in ("latency_ms", "failure_rate", "token", "mode", "timeout_sleep_s"):
                if key in update:
                    setattr(self, key, update[key])
            if rules is not None:
                self.rules = rules
            if "mix" in update:
                self.mix = mix
            if seed is not None:
                self.rng.seed(seed)

    def describe(self) -> dict[str, Any]:
        """The current behaviour and per-phone counts (GET /config); never the token."""
        with self.lock:
            return {
                "latency_ms": self.latency_ms,
                "failure_rate": self.failure_rate,
                "mode": self.mode,
                "timeout_sleep_s": self.timeout_sleep_s,
                "rules": {phone: asdict(rule) for phone, rule in self.rules.items()},
                "mix": self.mix,
                "phone_calls": dict(self.phone_calls),
                "calls": len(self.calls),
            }

    def plan(self, phone: str | None) -> Plan:
        """Count a call for ``phone`` and decide its behaviour (a rule, the mix, or the mode).

        Holds the lock; the random draws come from ``rng`` in arrival order.
        """
        with self.lock:
            count = 0
            if phone is not None:
                count = self.phone_calls[phone] = self.phone_calls.get(phone, 0) + 1
            rule = self.rules.get(phone) if phone is not None else None
            if rule is not None:
                hold = (
                    self.timeout_sleep_s if rule.timeout_sleep_s is None else rule.timeout_sleep_s
                )
                if rule.fail_first is None or count <= rule.fail_first:
                    return Plan(rule.mode, hold, fail=False)
                return Plan("ok", hold, fail=False)  # the rule's failures are spent
            if self.mix is not None:
                modes = list(self.mix)
                mode = self.rng.choices(modes, weights=[self.mix[m] for m in modes])[0]
                return Plan(mode, self.timeout_sleep_s, fail=False)
            fail = self.rng.random() < self.failure_rate
            mode = self.mode
            if mode == "chaos":
                mode = self.rng.choice(["ok", "ok", "status:500", "garbage", "timeout"])
            return Plan(mode, self.timeout_sleep_s, fail)


class _Handler(BaseHTTPRequestHandler):
    state: FakeProviderState
    quiet: bool

    def log_message(self, format: str, *args: Any) -> None:
        if not self.quiet:
            super().log_message(format, *args)

    def _answer(self, status: int, body: Any) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The caller gave up (its read timeout): nobody to answer, nothing to report.
            self.close_connection = True

    def do_GET(self) -> None:
        if self.path == "/calls":
            with self.state.lock:
                calls = [asdict(call) for call in self.state.calls]
            self._answer(200, {"calls": calls})
        elif self.path == "/config":
            self._answer(200, self.state.describe())
        else:
            self._answer(404, {"code": 404, "message": "not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path == "/config":
            try:
                update = json.loads(raw or b"{}")
                if not isinstance(update, dict):
                    raise ValueError("the configuration is a JSON object")
                self.state.configure(update)
            except ValueError as error:
                self._answer(400, {"code": 400, "message": str(error)})
                return
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
        phone = _phone_of(body)
        state = self.state
        plan = state.plan(phone)
        with state.lock:
            latency, token = state.latency_ms, state.token
        authorization = self.headers.get("Authorization")
        status, answer = _decide(
            match.group(1),
            body,
            authorization=authorization,
            token=token,
            mode=plan.mode,
            fail=plan.fail,
        )
        # Recorded on arrival, so a slow answer never lands in a later test's list.
        with state.lock:
            state.calls.append(
                ProviderCall(
                    int(match.group(1)),
                    body,
                    authorization,
                    status,
                    time.time(),
                    accepted=answer == {"code": 0, "message": "OK"},
                    phone=phone,
                    mode=plan.mode,
                )
            )
        if latency:
            time.sleep(latency / 1000)
        if plan.mode == "timeout":
            time.sleep(plan.hold_s)
        if not self.quiet:
            print(f"[provider] send msgId={match.group(1)} -> {status}", flush=True)
        self._answer(status, answer)


def _phone_of(body: Any) -> str | None:
    phone = body.get("phone") if isinstance(body, dict) else None
    return str(phone) if isinstance(phone, int | str) and not isinstance(phone, bool) else None


def _decide(  # noqa: PLR0911 - one answer per simulated behaviour
    msg_id: str, body: Any, *, authorization: str | None, token: str | None, mode: str, fail: bool
) -> tuple[int, Any]:
    if token is not None and authorization != f"Bearer {token}":
        return 401, {"code": 401, "message": "unauthorized"}
    if mode == "timeout":
        return 504, {"code": 504, "message": "late"}
    if mode == "garbage":
        return 200, b"<html>not json</html>"
    if mode.startswith("status:"):
        status = int(mode.split(":", 1)[1])
        return status, {"code": status, "message": "configured failure"}
    if fail:
        return 500, {"code": 500, "message": "random failure"}
    if not isinstance(body, dict) or body.get("id") != int(msg_id):
        return 400, {"code": 400, "message": "id in body differs from path"}
    return 200, {"code": 0, "message": "OK"}


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
