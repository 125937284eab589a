"""Test sends (issue 18): a task's text sent now to a few phones; the route, its OpenAPI
description, and the mapping from the request model to domain values and back."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalice.app import Blueprint, Response

from chalicelib import http
from chalicelib.api.auth import PROTECTED
from chalicelib.api.operation import Operation
from chalicelib.bootstrap import services
from chalicelib.domain.test_sends import STOPPED
from chalicelib.schemas import TestSendIn, TestSendOut, TestSendResultOut, parse

# For the type checker only (see chalicelib/api/clients.py).
if TYPE_CHECKING:
    from chalicelib.domain.test_sends import TestSendResult

bp = Blueprint(__name__)


@bp.route("/api/tasks/{task_id}/test", methods=["POST"], **PROTECTED)
@Operation(
    "Send a test of a task",
    "tasks",
    "Sends the task's text now to these phones (1 to 5), whatever the task's times "
    "and status (scheduled, running or finished alike); a deleted task is 404. Not "
    "counted in the task's statistics. A phone on the stop list gets no call "
    "(`suppressed`). A phone named twice gets one send and one result. Each phone "
    "gets one provider call, and one quick retry of a retryable answer (a timeout, "
    "HTTP 5xx, 429...) when it still fits the request's time; the answer comes "
    "within about 20 seconds. Each call has its own `msgId`, from a range no "
    "message of a mailing ever uses.",
    body=TestSendIn,
    body_examples={
        "two phones": {"phones": ["79001234567", "79001234568"]},
        "a phone as an integer": {"phones": [79001234567]},
    },
    answer=TestSendOut,
    answer_example={
        "results": [
            {"phone": "79001234567", "status": "sent", "error": None},
            {"phone": "79001234568", "status": "failed", "error": "HTTP 400"},
            {"phone": "79001234569", "status": "suppressed", "error": STOPPED},
        ]
    },
)
@http.endpoint
def test_send(task_id: str) -> Response:
    target = http.path_id(task_id, "Task")
    data = parse(TestSendIn, http.json_body(bp.current_request))
    results = services().test_sends.send(target, data.phones)
    return http.ok(TestSendOut(results=[result_out(result) for result in results]))


def result_out(result: TestSendResult) -> TestSendResultOut:
    return TestSendResultOut(phone=result.phone, status=result.status.value, error=result.error)
