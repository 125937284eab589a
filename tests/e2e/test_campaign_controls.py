"""Campaign controls (issue 18) on the real ``make run`` stack, in real time.

One test, ``test_pause_resume_cancel_and_the_stop_list``: a 200-client mailing (one
client's phone on the stop list) is paused in the middle: no provider call arrives after
the pause's answer and its counts stay still; resumed, the rest is sent, none twice, the
stopped phone never called (``suppressed``). A second mailing to the same clients is
cancelled in the middle: no call after the answer, its pending messages become
``cancelled``, the task stays ``cancelled`` and refuses a resume.

The provider answers after 1 s and the stack runs two queue pollers (ten calls each at
a time), so a mailing takes about 30 s and a pause lands in its middle. The counts
follow the messages' stream a few seconds behind: every wait polls with a deadline.
About 75 s with the stack's start-up and teardown (105 s beside another e2e run).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from tests.e2e.conftest import Stack
from tests.e2e.test_engine_faults import ID_SPAN, Api, Provider, accepted_twice, phones, wait_for

AUDIENCE = 200
CODE = "ctl"
LATENCY_MS = 1000
SETTLE = 30.0  # how long the stream-fed counts may take to catch up on a loaded machine
STILL = 4.0  # how long a paused mailing's counts are watched for not moving


def control(api: Api, task_id: int, action: str) -> tuple[requests.Response, float]:
    """POST a control; the answer and when it arrived (epoch seconds)."""
    answer = api.session.post(f"{api.url}/tasks/{task_id}/{action}", timeout=60)
    return answer, time.time()


def counts(api: Api, task_id: int) -> dict[str, Any]:
    body = api.session.get(f"{api.url}/tasks/{task_id}/stats", params={"limit": 1}, timeout=30)
    assert body.status_code == 200, body.text
    return {"total": body.json()["total"], **body.json()["messages"]}


def accepted_ids(provider: Provider, task_id: int) -> list[int]:
    return [call["msg_id"] for call in provider.calls_of(task_id) if call["accepted"]]


def settled(api: Api, provider: Provider, task_id: int) -> dict[str, Any]:
    """The counts once they show every call the provider accepted (the stream caught up)."""
    sent = len(accepted_ids(provider, task_id))
    return dict(
        wait_for(
            f"the counts of task {task_id} show its {sent} accepted calls",
            lambda: (found := counts(api, task_id))["sent"] == sent and found,
            within=SETTLE,
        )
    )


@pytest.mark.stack_env(SENDER_CONCURRENCY="2")
def test_pause_resume_cancel_and_the_stop_list(stack: Stack) -> None:
    api, provider = Api(stack), Provider(stack)
    ids = api.add_clients(phones("7903", AUDIENCE), code=CODE, threads=8)
    stopped_phone = sorted(ids)[AUDIENCE // 2]
    answer = api.session.post(f"{api.url}/stoplist/", json={"phone": stopped_phone}, timeout=30)
    assert answer.status_code == 201, answer.text
    provider.configure(latency_ms=LATENCY_MS)
    end = datetime.now(UTC) + timedelta(minutes=10)

    # --- pause in the middle, then resume ---------------------------------------------
    task, _ = api.create_task(code=CODE, end=end, text="controls: paused")
    task_id = task["id"]
    wait_for("the mailing is under way", lambda: len(provider.calls_of(task_id)) >= 10, within=30)
    answer, paused_at = control(api, task_id, "pause")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "paused"

    frozen = settled(api, provider, task_id)
    assert frozen["pending"] > 0 or frozen["total"] < AUDIENCE, f"not in the middle: {frozen}"
    time.sleep(STILL)
    assert counts(api, task_id) == frozen, "the counts of a paused mailing moved"
    late = [c for c in provider.calls_of(task_id) if c["at"] > paused_at]
    assert late == [], f"{len(late)} provider calls arrived after the pause's answer"
    assert api.task(task_id)["status"] == "paused"

    answer, _ = control(api, task_id, "resume")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "running"
    done = wait_for(
        "the resumed mailing sends the rest",
        lambda: (
            (found := counts(api, task_id))["total"] == AUDIENCE and found["pending"] == 0 and found
        ),
        within=60,
    )
    assert done == {
        "total": AUDIENCE,
        "pending": 0,
        "sent": AUDIENCE - 1,
        "failed": 0,
        "expired": 0,
        "cancelled": 0,
        "suppressed": 1,
    }
    calls = provider.calls_of(task_id)
    assert accepted_twice(calls) == {}
    expected = {task_id * ID_SPAN + ids[p] for p in ids if p != stopped_phone}
    assert set(accepted_ids(provider, task_id)) == expected
    assert [c for c in calls if str(c["phone"]) == stopped_phone] == []
    messages = api.messages(task_id)
    assert messages[ids[stopped_phone]]["status"] == "suppressed"
    wait_for("the task finishes", lambda: api.task(task_id)["status"] == "finished", within=15)

    # --- cancel in the middle ---------------------------------------------------------
    second, _ = api.create_task(code=CODE, end=end, text="controls: cancelled")
    second_id = second["id"]
    wait_for(
        "the second mailing is under way",
        lambda: len(provider.calls_of(second_id)) >= 10,
        within=30,
    )
    answer, cancelled_at = control(api, second_id, "cancel")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "cancelled"
    sent = len(accepted_ids(provider, second_id))
    final = wait_for(
        "the cancelled mailing's pending messages become cancelled",
        lambda: (
            (found := counts(api, second_id))["pending"] == 0 and found["sent"] == sent and found
        ),
        within=SETTLE,
    )
    provider.configure(latency_ms=0)  # let the stack stop sooner
    late = [c for c in provider.calls_of(second_id) if c["at"] > cancelled_at]
    assert late == [], f"{len(late)} provider calls arrived after the cancel's answer"
    assert final["cancelled"] > 0, final
    assert final["total"] == final["sent"] + final["cancelled"] + final["suppressed"], final
    assert final["failed"] == final["expired"] == 0, final
    assert accepted_twice(provider.calls_of(second_id)) == {}
    assert api.task(second_id)["status"] == "cancelled"
    answer, _ = control(api, second_id, "resume")
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"] == "conflict"
    time.sleep(2)  # a few ticks later it is still cancelled, its counts as they were
    assert api.task(second_id)["status"] == "cancelled"
    assert counts(api, second_id) == final
