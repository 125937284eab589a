"""A smoke test of a running stack, deployed or local, through its public API.

    NOTIFY_KEY=... python -m tools.smoke https://<id>.execute-api.<region>.amazonaws.com/v1

It checks the health route, that a request without a key is refused in the error format,
then creates a client and a task starting tomorrow (so nothing is sent), reads them and
the task's statistics back, and deletes both: it leaves the stack as it found it. Each
step prints one line; the exit status is 0 when every step passed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

TIMEOUT = (5, 30)  # seconds to connect, to read (DELETE of a task waits about 3 s)


class SmokeFailed(Exception):
    pass


def check(answer: requests.Response, status: int) -> Any:
    if answer.status_code != status:
        raise SmokeFailed(
            f"{answer.request.method} {answer.url}: {answer.status_code} {answer.text}"
        )
    return answer.json() if answer.content else None


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def steps(base: str, key: str) -> list[tuple[str, Callable[[dict[str, Any]], None]]]:
    api = f"{base.rstrip('/')}/api"
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    # A phone no real client has: 7 then 00 then eight random digits.
    phone = "700" + "".join(secrets.choice("0123456789") for _ in range(8))
    start = datetime.now(UTC) + timedelta(days=1)

    def health(_: dict[str, Any]) -> None:
        body = check(requests.get(f"{api}/health", timeout=TIMEOUT), 200)
        if body != {"status": "ok"}:
            raise SmokeFailed(f"health: {body}")

    def refused_without_key(_: dict[str, Any]) -> None:
        body = check(requests.get(f"{api}/clients/", timeout=TIMEOUT), 401)
        if body.get("error") != "unauthorized":
            raise SmokeFailed(f"401 without the error format: {body}")

    def create_client(seen: dict[str, Any]) -> None:
        body = {"phone": phone, "code": "smoke", "tag": "smoke-test", "utc": "UTC"}
        seen["client"] = check(session.post(f"{api}/clients/", json=body, timeout=TIMEOUT), 201)
        client_id = seen["client"]["id"]
        read = check(session.get(f"{api}/clients/{client_id}", timeout=TIMEOUT), 200)
        if read != seen["client"]:
            raise SmokeFailed(f"read back {read}, created {seen['client']}")

    def create_task(seen: dict[str, Any]) -> None:
        body = {
            "start_time": iso(start),
            "end_time": iso(start + timedelta(hours=1)),
            "text": "smoke test: never sent (starts tomorrow, deleted at once)",
            "filter": {"tags": ["smoke-test"]},
        }
        seen["task"] = check(session.post(f"{api}/tasks/", json=body, timeout=TIMEOUT), 201)
        task_id = seen["task"]["id"]
        stats = check(session.get(f"{api}/tasks/{task_id}/stats", timeout=TIMEOUT), 200)
        if stats["total"] != 0:
            raise SmokeFailed(f"a task starting tomorrow has messages: {stats}")

    def clean_up(seen: dict[str, Any]) -> None:
        if "task" in seen:
            check(session.delete(f"{api}/tasks/{seen['task']['id']}", timeout=TIMEOUT), 204)
        if "client" in seen:
            check(session.delete(f"{api}/clients/{seen['client']['id']}", timeout=TIMEOUT), 204)
            check(session.get(f"{api}/clients/{seen['client']['id']}", timeout=TIMEOUT), 404)

    return [
        ("health", health),
        ("a request without a key is refused", refused_without_key),
        ("create and read a client", create_client),
        ("create a task for tomorrow and read its statistics", create_task),
        ("delete the task and the client", clean_up),
    ]


def run(base: str, key: str, out: Callable[[str], None] = print) -> bool:
    seen: dict[str, Any] = {}
    plan = steps(base, key)
    for index, (name, step) in enumerate(plan):
        try:
            step(seen)
        except (SmokeFailed, requests.RequestException) as error:
            out(f"FAIL {name}: {error or 'unexpected answer'}")
            if index < len(plan) - 1:
                try:
                    plan[-1][1](seen)  # leave nothing behind
                except (SmokeFailed, requests.RequestException) as cleaning:
                    out(f"FAIL cleaning up after it: {cleaning}")
            return False
        out(f"ok   {name}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.smoke", description=__doc__)
    parser.add_argument("base_url", help="the stack's BaseUrl output, or http://127.0.0.1:8000")
    args = parser.parse_args(argv)
    key = os.environ.get("NOTIFY_KEY")
    if not key:
        print("set NOTIFY_KEY to an API key (python -m local.keys --stage <stage> create smoke)")
        return 2
    return 0 if run(args.base_url, key) else 1


if __name__ == "__main__":
    sys.exit(main())
