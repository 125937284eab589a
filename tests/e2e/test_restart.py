"""``make run`` keeps its data across restarts (issue 15, part 4).

The data and the generated development key outlive a stop; ``FRESH=1`` starts empty; a
mailing whose stack is killed outright (``kill -9``) carries on after a restart with no
message lost and none accepted twice under two msgIds (SPEC rule 5: a repeat of the same
msgId is the provider's to drop).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from local.fake_provider import FakeProvider, FakeProviderState
from local.supervisor import free_port
from tests.conftest import ROOT
from tests.e2e.conftest import DEV_KEY, descendants, start_stack, stop_stack
from tests.e2e.test_crash import command_line, kill_leftovers, wait_until_gone
from tests.e2e.test_engine_faults import iso, phones

pytestmark = pytest.mark.e2e

KEY_LINE = re.compile(r"API key\s+(\S+) \((.*)\)")


def banner_key(log: Path) -> tuple[str, str]:
    """The development key the banner printed, and where it said it came from."""
    deadline = time.monotonic() + 15
    while True:
        match = KEY_LINE.search(log.read_text())
        if match:
            return match.group(1), match.group(2)
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def data_line(log: Path) -> str:
    banner_key(log)  # the banner is out
    (line,) = [line for line in log.read_text().splitlines() if line.strip().startswith("data ")]
    return line


def get(url: str, key: str, **params: Any) -> Any:
    answer = requests.get(
        url, headers={"Authorization": f"Bearer {key}"}, params=params, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def post(url: str, key: str, body: dict[str, Any]) -> Any:
    answer = requests.post(url, headers={"Authorization": f"Bearer {key}"}, json=body, timeout=30)
    assert answer.status_code == 201, answer.text
    return answer.json()


def create_task(url: str, key: str, code: str, start: datetime) -> Any:
    """A task for the clients with ``code``, from ``start`` for ten minutes."""
    body = {
        "start_time": iso(start),
        "end_time": iso(start + timedelta(minutes=10)),
        "text": f"kept across restarts: {code}",
        "filter": {"codes": [code]},
    }
    return post(f"{url}/api/tasks/", key, body)


def test_data_and_the_generated_key_survive_a_restart_and_fresh_starts_empty(
    tmp_path: Path,
) -> None:
    state = str(tmp_path / "state")
    env = {"TICK_SECONDS": "1", "API_KEY": "", "NOTIFY_STATE_DIR": state}
    first = start_stack(tmp_path / "first.log", env)
    try:
        key, origin = banner_key(first.log)
        assert origin.startswith("new, kept in"), origin
        assert "started empty (nothing kept yet)" in data_line(first.log)
        client = post(
            f"{first.url}/api/clients/",
            key,
            {"phone": "79001112233", "code": "900", "tag": "vip", "utc": "Europe/Moscow"},
        )
        task = create_task(first.url, key, "900", datetime.now(UTC) + timedelta(days=1))
    finally:
        stop_stack(first.process)

    second = start_stack(tmp_path / "second.log", env)
    try:
        again, origin = banner_key(second.log)
        assert again == key, "the generated development key changed across a restart"
        assert origin.startswith("kept in"), origin
        assert "restored" in data_line(second.log), data_line(second.log)
        assert get(f"{second.url}/api/clients/{client['id']}", key) == client
        assert get(f"{second.url}/api/tasks/{task['id']}", key) == task
        # The id counter was kept too: the next client does not take the first one's id.
        other = post(
            f"{second.url}/api/clients/",
            key,
            {"phone": "79001112244", "code": "900", "tag": "", "utc": "+03:00"},
        )
        assert other["id"] > client["id"]
    finally:
        stop_stack(second.process)

    third = start_stack(tmp_path / "third.log", {**env, "FRESH": "1"})
    try:
        assert banner_key(third.log)[0] == key
        assert "started empty (FRESH=1)" in data_line(third.log)
        assert get(f"{third.url}/api/clients/", key)["items"] == []
    finally:
        stop_stack(third.process)


def kill_outright(stack: Any) -> None:
    """SIGKILL the supervisor (``local.run``); wait until all it started is gone."""
    pids = descendants(stack.process.pid)
    try:
        (supervisor,) = [pid for pid in pids if "local.run" in command_line(pid)]
        os.kill(supervisor, signal.SIGKILL)
        stack.process.wait(timeout=10)
        alive, held = wait_until_gone(pids, stack.ports[:2])
        assert not alive and not held, (alive, held)
    finally:
        kill_leftovers(pids)


@pytest.mark.parametrize("stop", ["SIGKILL", "SIGTERM"])
def test_a_mailing_stopped_midway_carries_on_after_a_restart(tmp_path: Path, stop: str) -> None:
    # The provider lives outside the stack, so that it sees the calls of both runs.
    provider = FakeProvider(
        port=0, state=FakeProviderState(latency_ms=40, token="restart-token"), quiet=True
    )
    provider.start()
    env = {
        "TICK_SECONDS": "1",
        "NOTIFY_STATE_DIR": str(tmp_path / "state"),
        "SENDER_URL": provider.url,
        "SENDER_TOKEN": "restart-token",
        "SENDER_CONCURRENCY": "2",
        # A claim held at the kill lapses sooner (a call must fit in it: 2 s to connect
        # plus the read timeout).
        "LEASE_SECONDS": "20",
        "PROVIDER_READ_TIMEOUT": "5",
    }
    total = 150
    try:
        first = start_stack(tmp_path / "first.log", env)
        try:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {DEV_KEY}"
            for phone in phones("7911", total):
                body = {"phone": phone, "code": "restart", "tag": "", "utc": "Europe/Moscow"}
                assert session.post(f"{first.url}/api/clients/", json=body, timeout=30).ok
            task = create_task(first.url, DEV_KEY, "restart", datetime.now(UTC))
            deadline = time.monotonic() + 60
            while len(provider.state.sends()) < total // 4:
                assert time.monotonic() < deadline, "the mailing did not start"
                time.sleep(0.05)
        finally:
            # Slow answers from here on: the parallel fan-out and the senders can finish
            # a 150-client mailing within the second a clean stop takes.
            provider.state.latency_ms = 1000
            if stop == "SIGKILL":
                kill_outright(first)
            else:
                stop_stack(first.process)
        before = len(provider.state.sends())
        assert before < total, "the mailing finished before the stop: nothing to carry on"

        # Other ports: nothing kept may depend on them.
        provider.state.latency_ms = 40
        second = start_stack(tmp_path / "second.log", env)
        try:
            assert "restored" in data_line(second.log)
            deadline = time.monotonic() + 120  # a claim held at the kill lapses in 20 s
            while True:
                stats = get(f"{second.url}/api/tasks/{task['id']}/stats", DEV_KEY, limit=1)
                if stats["messages"]["pending"] == 0 and stats["total"] == total:
                    break
                assert time.monotonic() < deadline, (stats["messages"], second.log.read_text())
                time.sleep(0.5)
        finally:
            stop_stack(second.process)
    finally:
        provider.stop()

    assert stats["messages"]["sent"] == total, stats["messages"]
    ids_by_phone: dict[str, set[int]] = defaultdict(set)
    for call in provider.state.sends():
        ids_by_phone[str(call.phone)].add(int(call.msg_id))
    extra = sorted(phone for phone in ids_by_phone if not phone.startswith("7911"))
    assert len(ids_by_phone) == total, f"{len(ids_by_phone)} phones called, not {total}: {extra}"
    # A repeat after a kill (the answer came, the status write did not) carries the same
    # msgId, for the provider to drop; two msgIds for one client would be two messages.
    assert all(len(ids) == 1 for ids in ids_by_phone.values())
    repeats = len(provider.state.sends()) - total
    print(f"{stop}: {before} calls before the stop, {repeats} repeated after the restart")
    if stop == "SIGTERM":
        assert repeats == 0, "a clean stop lost the answer of a call it made"


def test_the_keys_tool_says_so_when_the_emulator_it_finds_is_gone(tmp_path: Path) -> None:
    """A stack killed outright leaves the file naming its emulator behind."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "emulator.url").write_text(f"http://127.0.0.1:{free_port()}")
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "local.keys", "list"],
        cwd=ROOT,
        env={**env, "NOTIFY_STATE_DIR": str(state)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "does not answer" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
