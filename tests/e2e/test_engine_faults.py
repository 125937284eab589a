"""The sending engine under real time and a misbehaving provider (issue 14), on ``make run``.

Each test starts the real stack (``stack`` in conftest.py) with short retry settings and
drives it only through the public HTTP API and the built-in fake provider
(``POST /config`` to make it misbehave, ``GET /calls`` to see what reached it). Nothing
runs on a frozen clock: leases, delays and the schedule take the time they take.

- ``test_per_phone_failures_end_sent_with_the_right_attempts``: a provider failing one
  phone's first two calls with 500, answering another garbage twice, hanging past the
  read timeout once, answering 429 once, 400 always for one: every message ends ``sent``
  (the 400 one ``failed``) with ``attempts`` equal to its provider calls, the same msgId
  on every call, nothing at or after the end, nothing accepted twice (SPEC rules 4-6).
- ``test_a_big_slow_mailing_starves_neither_the_api_nor_a_small_one``: with the provider
  taking 8 s a call, a 300-client mailing does not slow ``POST /api/tasks/`` of a
  3-client one ending 50 s later, and the small one is sent before its end (rule 6).
- ``test_chaos_mailing_ends_final_by_the_end``: the issue's "Done when": 120 clients, a
  4-minute window, a provider answering 50% ok, 25% 500, 5% 429, 10% garbage, 10% hangs
  for 40 s: every message final by the end plus one tick, none accepted twice, no call at
  or after the end, at least 90% sent.
- ``test_a_window_change_revives_a_message_whose_window_opened_after_the_end`` and
  ``test_a_later_end_revives_a_message_whose_retry_fell_after_the_end``: a message set
  aside because its window (or its next retry) fell after the end is sent once the
  window (or the end) is changed so that it can be (README: a window change "applies to
  every message not yet sent"; rules 6 and 7).

Run: ``.venv/bin/python -m pytest tests/e2e/test_engine_faults.py``. About 3 minutes
when the engine is right (the chaos test ~45 s, the starvation one ~75 s with its
teardown); about 8 when it is not, the chaos test then waiting out its 4-minute window.
Every wait is bounded and polls. On a failure the relevant lines of the stack's log
(``run.log`` in the test's tmp_path) are quoted.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from tests.e2e.conftest import DEV_KEY, Stack

TICK = 1.0  # TICK_SECONDS of every stack here
POLL = 0.5
# Short retries, a short read timeout: faults play out in seconds, not minutes.
FAST_RETRIES = {
    "RETRY_BASE_SECONDS": "1",
    "RETRY_CAP_SECONDS": "4",
    "PROVIDER_READ_TIMEOUT": "2",
    "MAX_ATTEMPTS": "6",
}
READ_TIMEOUT = float(FAST_RETRIES["PROVIDER_READ_TIMEOUT"])
# A message id reads task_id * 10**10 + client_id (README).
ID_SPAN = 10**10


# --- the public API --------------------------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def epoch(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def hhmm(moment: datetime) -> str:
    return moment.strftime("%H:%M")


class Api:
    """The service's public HTTP API with the development key; one pooled session."""

    def __init__(self, stack: Stack) -> None:
        self.url = f"{stack.url}/api"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {DEV_KEY}"
        self.session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=8))

    def add_clients(
        self, phones: Iterable[str], *, code: str, utc: str = "Europe/Moscow", threads: int = 4
    ) -> dict[str, int]:
        """Create one client per phone (on a few threads); their ids by phone."""

        def create(phone: str) -> tuple[str, int]:
            body = {"phone": phone, "code": code, "tag": "", "utc": utc}
            answer = self.session.post(f"{self.url}/clients/", json=body, timeout=30)
            assert answer.status_code == 201, answer.text
            # Each request is handled with its own body (local/api_server.py, per thread).
            assert answer.json()["phone"] == phone, answer.text
            return phone, int(answer.json()["id"])

        with ThreadPoolExecutor(max_workers=threads) as pool:
            return dict(pool.map(create, list(phones)))

    def create_task(
        self,
        *,
        code: str,
        end: datetime,
        start: datetime | None = None,
        window: tuple[str, str] | None = None,
        text: str = "e2e engine faults",
    ) -> tuple[dict[str, Any], float]:
        """Create a task; the task and how many seconds the POST took."""
        body: dict[str, Any] = {
            "start_time": iso(start or datetime.now(UTC)),
            "end_time": iso(end),
            "text": text,
            "filter": {"codes": [code]},
        }
        if window is not None:
            body["send_window"] = {"from": window[0], "to": window[1]}
        started = time.monotonic()
        answer = self.session.post(f"{self.url}/tasks/", json=body, timeout=60)
        took = time.monotonic() - started
        assert answer.status_code == 201, answer.text
        return answer.json(), took

    def patch_task(self, task_id: int, **fields: Any) -> dict[str, Any]:
        answer = self.session.patch(f"{self.url}/tasks/{task_id}", json=fields, timeout=30)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def task(self, task_id: int) -> dict[str, Any]:
        return dict(self.session.get(f"{self.url}/tasks/{task_id}", timeout=30).json())

    def stats(self, task_id: int) -> dict[str, Any]:
        """``GET /api/tasks/{id}/stats`` with every message (all pages)."""
        url = f"{self.url}/tasks/{task_id}/stats"
        body = self.session.get(url, params={"limit": 1000}, timeout=30).json()
        items, cursor = list(body["items"]), body["next"]
        while cursor:
            page = self.session.get(url, params={"limit": 1000, "cursor": cursor}, timeout=30)
            items += page.json()["items"]
            cursor = page.json()["next"]
        return {**body, "items": items}

    def messages(self, task_id: int) -> dict[int, dict[str, Any]]:
        """The task's messages by client id."""
        return {int(item["client_id"]): item for item in self.stats(task_id)["items"]}


class Provider:
    """The built-in fake provider: its knobs (POST /config) and what it received."""

    def __init__(self, stack: Stack) -> None:
        self.url = stack.provider_url

    def configure(self, **settings: Any) -> None:
        answer = requests.post(f"{self.url}/config", json=settings, timeout=10)
        assert answer.status_code == 200, answer.text

    def calls(self) -> list[dict[str, Any]]:
        return list(requests.get(f"{self.url}/calls", timeout=10).json()["calls"])

    def calls_of(self, task_id: int) -> list[dict[str, Any]]:
        return [call for call in self.calls() if call["msg_id"] // ID_SPAN == task_id]


# --- waiting and checking --------------------------------------------------------------


@dataclass
class Watch:
    """What polling a task's statistics saw: the last answer, when everything was final."""

    stats: dict[str, Any]
    all_final_at: float | None  # epoch seconds of the first poll that saw no pending

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.stats["messages"])


def watch_until_final(api: Api, task_id: int, *, total: int, until: float) -> Watch:
    """Poll the task's statistics until its ``total`` messages are all final, or until
    ``until`` (epoch seconds) passes."""
    while True:
        stats = api.stats(task_id)
        if stats["total"] == total and stats["messages"]["pending"] == 0:
            return Watch(stats, time.time())
        if time.time() >= until:
            return Watch(stats, None)
        time.sleep(POLL)


def wait_for(what: str, check: Callable[[], Any], *, within: float) -> Any:
    """Poll ``check`` until it answers something truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"not within {within:.0f}s: {what}")
        time.sleep(POLL)


def calls_at_or_after(calls: list[dict[str, Any]], end: float) -> list[dict[str, Any]]:
    """Provider calls that arrived at or after ``end`` (epoch seconds): SPEC rule 4."""
    return [call for call in calls if call["at"] >= end]


def accepted_twice(calls: list[dict[str, Any]]) -> dict[int, int]:
    """msgIds the provider answered 200 OK more than once: SPEC rule 5."""
    accepted = Counter(call["msg_id"] for call in calls if call["accepted"])
    return {msg_id: n for msg_id, n in accepted.items() if n > 1}


def stray_ids(calls: list[dict[str, Any]], task_id: int, ids: dict[str, int]) -> list[Any]:
    """Calls whose msgId (path or body) is not ``task_id * 10**10 + client_id`` of their
    phone: the msgId must be the same on every attempt."""
    return [
        call
        for call in calls
        if call["msg_id"] != task_id * ID_SPAN + ids.get(str(call["phone"]), -1)
        or call["body"]["id"] != call["msg_id"]
    ]


def log_of(stack: Stack, *needles: str, last: int = 60) -> str:
    """The stack log's lines that mention any of ``needles`` (the last ``last``), for
    failure messages."""
    lines = stack.log.read_text(errors="replace").splitlines()
    hits = [line for line in lines if any(needle in line for needle in needles)]
    return "\n".join(hits[-last:])


def phones(prefix: str, count: int) -> list[str]:
    """``count`` distinct phones ``7`` + ten digits starting with ``prefix``."""
    return [f"{prefix}{n:0{10 - len(prefix) + 1}d}" for n in range(1, count + 1)]


# --- a. per-phone failures --------------------------------------------------------------

# phone -> (fake provider rule, expected status, expected attempts)
PER_PHONE = {
    "79000000001": ({"fail_first": 2, "mode": "status:500"}, "sent", 3),
    "79000000002": ({"fail_first": 2, "mode": "garbage"}, "sent", 3),
    "79000000003": ({"fail_first": 1, "mode": "timeout", "timeout_sleep_s": 6}, "sent", 2),
    "79000000004": ({"fail_first": 1, "mode": "status:429"}, "sent", 2),
    "79000000005": ({"mode": "status:400"}, "failed", 1),
    "79000000006": (None, "sent", 1),
}


@pytest.mark.stack_env(**FAST_RETRIES)
def test_per_phone_failures_end_sent_with_the_right_attempts(stack: Stack) -> None:
    api, provider = Api(stack), Provider(stack)
    ids = api.add_clients(PER_PHONE, code="faults")
    provider.configure(
        rules={phone: rule for phone, (rule, _, _) in PER_PHONE.items() if rule is not None}
    )
    # The end is far enough that every retry fits well before it: nothing may expire.
    task, _ = api.create_task(code="faults", end=datetime.now(UTC) + timedelta(seconds=120))
    end = epoch(task["end_time"])

    # Each message needs at most a few seconds of backoff and one read timeout.
    watched = watch_until_final(api, task["id"], total=len(PER_PHONE), until=time.time() + 30)

    calls = provider.calls_of(task["id"])
    by_phone = Counter(str(call["phone"]) for call in calls)
    messages = {int(item["client_id"]): item for item in watched.stats["items"]}
    seen = {
        phone: (messages[ids[phone]]["status"], messages[ids[phone]]["attempts"], by_phone[phone])
        for phone in PER_PHONE
    }
    expected = {
        phone: (status, attempts, attempts) for phone, (_, status, attempts) in PER_PHONE.items()
    }
    assert seen == expected, "(status, attempts, provider calls) by phone differ\n" + log_of(
        stack, "retry", "dropped", "outcomes", "expired"
    )
    assert messages[ids["79000000005"]]["last_error"] == "HTTP 400"
    assert stray_ids(calls, task["id"], ids) == []
    assert calls_at_or_after(calls, end) == []
    assert accepted_twice(calls) == {}
    # All final: the task finishes without waiting for its end.
    wait_for(
        "the task finishes once all its messages are final",
        lambda: api.task(task["id"])["status"] == "finished",
        within=5 * TICK,
    )


# --- b. starvation ----------------------------------------------------------------------


@pytest.mark.stack_env(PROVIDER_READ_TIMEOUT="12")  # above the provider's 8 s latency
def test_a_big_slow_mailing_starves_neither_the_api_nor_a_small_one(stack: Stack) -> None:
    api, provider = Api(stack), Provider(stack)
    api.add_clients(phones("7901", 300), code="big")
    small_ids = api.add_clients(phones("7902", 3), code="small")
    provider.configure(latency_ms=8000)

    big, _ = api.create_task(code="big", end=datetime.now(UTC) + timedelta(minutes=10))
    # The senders are busy with the big mailing and its jobs fill the queue.
    wait_for(
        "the big mailing keeps the provider busy",
        lambda: len(provider.calls_of(big["id"])) >= 20,
        within=30,
    )
    # 50 s: behind the whole big mailing (300 calls, 40 at a time, 8 s each) it would
    # take over 60 s; the fan-outs keep at most about 40 ready jobs each ahead of it.
    small, took = api.create_task(code="small", end=datetime.now(UTC) + timedelta(seconds=50))
    end = epoch(small["end_time"])

    watched = watch_until_final(api, small["id"], total=3, until=end + 2 * TICK)
    calls = provider.calls_of(small["id"])
    provider.configure(latency_ms=0)  # let the stack stop sooner
    problems = []
    # Before, the API's own start paused on the full queue for its whole 3 s budget
    # (API_DISPATCH_BUDGET_SECONDS), so it took over 3 s. Without a pause the emulator
    # alone takes one to three seconds under this load (one write at a time: 2.74 s in
    # a full make test here), so only a pause is measured here;
    # tests/integration/test_engine_regressions.py checks that it never pauses at all.
    if took >= 3.0:
        problems.append(f"POST /api/tasks/ of the small mailing took {took:.2f}s")
    if watched.counts["sent"] != 3:
        problems.append(
            f"the small mailing at its end: total {watched.stats['total']}, {watched.counts}, "
            f"{len(calls)} provider calls, arriving "
            + ", ".join(f"{call['at'] - end:+.1f}s" for call in calls)
            + " from its end"
        )
    assert not problems, "\n".join(problems) + "\n" + log_of(stack, "fan-out", "dispatch run")
    accepted = sorted(call["msg_id"] % ID_SPAN for call in calls if call["accepted"])
    assert accepted == sorted(small_ids.values())
    assert calls_at_or_after(calls, end) == []


# --- c. the chaos run of "Done when" ----------------------------------------------------

CHAOS_MIX = {"ok": 0.5, "status:500": 0.25, "status:429": 0.05, "garbage": 0.1, "timeout": 0.1}


@pytest.mark.stack_env(**FAST_RETRIES)
def test_chaos_mailing_ends_final_by_the_end(stack: Stack) -> None:
    api, provider = Api(stack), Provider(stack)
    api.add_clients(phones("7903", 120), code="chaos")
    provider.configure(mix=CHAOS_MIX, timeout_sleep_s=40, seed=14)
    now = datetime.now(UTC)
    task, _ = api.create_task(code="chaos", start=now, end=now + timedelta(minutes=4))
    end = epoch(task["end_time"])

    # A call that began just before the end may land one read timeout after it; the
    # next dispatcher run then expires whatever is still pending.
    final_by = end + TICK + READ_TIMEOUT + 3
    watched = watch_until_final(api, task["id"], total=120, until=final_by + TICK)
    calls = provider.calls_of(task["id"])
    counts = watched.counts
    assert watched.stats["total"] == 120
    assert watched.all_final_at is not None and watched.all_final_at <= final_by, (
        f"not every message final by the end + one tick: {counts} "
        f"({len(calls)} provider calls for 120 messages)\n"
        + log_of(stack, "send batch", "retry scheduled", last=40)
    )
    assert calls_at_or_after(calls, end) == []
    assert accepted_twice(calls) == {}
    assert counts["sent"] >= 108, counts  # at least 90%


# --- d. reviving messages set aside -----------------------------------------------------

# A retry lands at least 15 s after a failure: past the end of a short task.
SLOW_RETRIES = {"RETRY_BASE_SECONDS": "15", "RETRY_CAP_SECONDS": "30", "MAX_ATTEMPTS": "6"}


@pytest.mark.stack_env(**SLOW_RETRIES)
def test_a_window_change_revives_a_message_whose_window_opened_after_the_end(
    stack: Stack,
) -> None:
    api, provider = Api(stack), Provider(stack)
    ids = api.add_clients(["79040000001"], code="window", utc="+00:00")
    now = datetime.now(UTC)
    # In the client's local time (UTC) the window opens two hours from now, after the end.
    later = (hhmm(now + timedelta(hours=2)), hhmm(now + timedelta(hours=3)))
    task, _ = api.create_task(code="window", end=now + timedelta(minutes=10), window=later)
    wait_for("the message is created", lambda: api.stats(task["id"])["total"] == 1, within=15)
    time.sleep(5 * TICK)  # the sender has judged the job: window closed until after the end
    assert provider.calls_of(task["id"]) == []
    assert api.messages(task["id"])[ids["79040000001"]]["status"] == "pending"

    open_now = (hhmm(now - timedelta(hours=1)), hhmm(now + timedelta(hours=1)))
    api.patch_task(task["id"], send_window={"from": open_now[0], "to": open_now[1]})
    watched = watch_until_final(api, task["id"], total=1, until=time.time() + 20)
    assert watched.counts["sent"] == 1, f"after the window change: {watched.counts}\n" + log_of(
        stack, f"task_id={task['id']}", "window"
    )
    assert len(provider.calls_of(task["id"])) == 1


@pytest.mark.stack_env(**SLOW_RETRIES)
def test_a_later_end_revives_a_message_whose_retry_fell_after_the_end(stack: Stack) -> None:
    api, provider = Api(stack), Provider(stack)
    phone = "79050000001"
    ids = api.add_clients([phone], code="late")
    provider.configure(rules={phone: {"mode": "status:500"}})
    task, _ = api.create_task(code="late", end=datetime.now(UTC) + timedelta(seconds=10))

    # The first attempt fails; its retry (15 s later) would come after the end.
    failed_once = wait_for(
        "the first attempt is recorded",
        lambda: [m for m in api.messages(task["id"]).values() if m["attempts"] == 1],
        within=10,
    )
    assert failed_once[0]["status"] == "pending"
    assert failed_once[0]["last_error"] == "HTTP 500"
    provider.configure(rules={})  # healthy from now on
    new_end = datetime.now(UTC) + timedelta(minutes=3)
    assert datetime.now(UTC).timestamp() < epoch(task["end_time"]), "too slow: the end passed"
    api.patch_task(task["id"], end_time=iso(new_end))

    # Sent by one backoff (15 s) after the failure, with room to spare.
    watched = watch_until_final(api, task["id"], total=1, until=time.time() + 40)
    calls = provider.calls_of(task["id"])
    assert watched.counts["sent"] == 1, (
        f"after the end moved later: {watched.counts}, {len(calls)} provider calls\n"
        + log_of(stack, f"task_id={task['id']}", "retry", "after the end")
    )
    assert watched.stats["items"][0]["attempts"] == 2
    assert {call["msg_id"] for call in calls} == {task["id"] * ID_SPAN + ids[phone]}
    assert accepted_twice(calls) == {}
