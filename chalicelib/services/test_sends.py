"""Test sends: a task's text sent now to a few phones, outside its mailing.

Nothing of the task changes and nothing is counted (no message item, no counter, no
first-send mark): a test send is one provider call per phone (two at most, below), with
a msgId of the test sends' own range (``chalicelib/domain/messages.py``), so the
provider never takes it for one of the task's messages. A phone on the stop list gets no
call. The calls run in parallel; each is bounded by the provider's timeouts, and the
whole request by ``BUDGET_SECONDS``, under the API function's timeout (25 s,
``.chalice/config.json``) and API Gateway's 29 s (README, "Test sends").
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from chalicelib import logs
from chalicelib.domain.messages import message_id_of_test_send
from chalicelib.domain.provider import Outcome
from chalicelib.domain.test_sends import (
    INTERNAL,
    NO_TOKEN,
    STOPPED,
    TestSendResult,
    TestSendStatus,
    distinct,
    retry_fits,
)
from chalicelib.errors import NotFound
from chalicelib.ports import Provider, StopList, TaskCatalog, TestSendNumbers

log = logs.get_logger("test_sends")

# The provider calls of one request at once (a request names at most 5 phones).
MAX_PARALLEL = 5
# The calls' share of the request: the API function has 25 s; what is left covers the
# reads before the calls (the task, the stop list, the numbers) and the answer. A retry
# is made only if it can end within it, so the first calls alone must fit (the default
# timeouts, 2 s to connect and 10 s to read, do).
BUDGET_SECONDS = 20.0


class TestSendService:
    __test__ = False  # not a pytest test class

    def __init__(
        self,
        *,
        tasks: TaskCatalog,
        stoplist: StopList,
        provider: Provider,
        numbers: TestSendNumbers,
        monotonic: Callable[[], float] = time.monotonic,
        budget_seconds: float = BUDGET_SECONDS,
        parallel: int = MAX_PARALLEL,
    ) -> None:
        self._tasks = tasks
        self._stoplist = stoplist
        self._provider = provider
        self._numbers = numbers
        self._monotonic = monotonic
        self._budget = budget_seconds
        self._parallel = parallel

    @property
    def call_seconds(self) -> float:
        """The longest one provider call may take."""
        return self._provider.connect_timeout + self._provider.read_timeout

    def send(self, task_id: int, phones: Sequence[str]) -> list[TestSendResult]:
        """One result per distinct phone, in the order first named; NotFound for a task
        that does not exist or was deleted (then nothing more is read, taken or called)."""
        started = self._monotonic()
        task = self._tasks.get(task_id)
        if task is None:
            raise NotFound(f"Task {task_id} does not exist.")
        with logs.bind(task_id=task_id):
            wanted = distinct(phones)
            stopped = self._stoplist.stopped(wanted) if wanted else set()
            to_send = [phone for phone in wanted if phone not in stopped]
            sent: dict[str, TestSendResult] = {}
            if to_send:
                numbers = self._numbers.take(len(to_send))
                ids = [message_id_of_test_send(number) for number in numbers]
                sent = self._call_all(task.text, list(zip(to_send, ids, strict=True)), started)
            results = [
                sent[phone]
                if phone in sent
                else TestSendResult(phone, TestSendStatus.SUPPRESSED, STOPPED)
                for phone in wanted
            ]
            for result in results:
                log.info(
                    "test send",
                    extra={
                        "phone": result.phone,  # masked by the formatter
                        "status": result.status.value,
                        "message_id": result.message_id,
                        "attempts": result.attempts,
                        "error": result.error,
                    },
                )
        return results

    def _call_all(
        self, text: str, calls: list[tuple[str, int]], started: float
    ) -> dict[str, TestSendResult]:
        try:
            token = self._provider.warm()
        except Exception:
            log.exception("test send: could not read the provider's token")
            return {
                phone: TestSendResult(phone, TestSendStatus.FAILED, NO_TOKEN) for phone, _ in calls
            }

        def call(phone: str, msg_id: int) -> TestSendResult:
            try:
                return self._call(text, phone, msg_id, token, started)
            except Exception:
                log.exception("test send failed inside the service")
                return TestSendResult(phone, TestSendStatus.FAILED, INTERNAL, msg_id)

        # Each call runs in a copy of this thread's context: its log lines carry the
        # request's bound fields (request_id, task_id), as the sender's do.
        context = contextvars.copy_context()
        with ThreadPoolExecutor(max_workers=min(self._parallel, len(calls))) as pool:
            answers = list(pool.map(lambda c: context.copy().run(call, c[0], c[1]), calls))
        return {result.phone: result for result in answers}

    def _call(
        self, text: str, phone: str, msg_id: int, token: str, started: float
    ) -> TestSendResult:
        answer = self._provider.send(msg_id, phone, text, 1, token=token)
        attempts = 1
        # One quick retry of a retryable answer, with the same msgId (the provider
        # de-duplicates on it, should the first call have gone through after all), when
        # it can end within the budget.
        if answer.outcome is Outcome.RETRY and retry_fits(
            self._monotonic() - started, self.call_seconds, self._budget
        ):
            try:
                token = self._provider.warm()  # read again if the provider refused it (401)
            except Exception:
                log.warning("test send: could not read the provider's token again", exc_info=True)
            else:
                if retry_fits(self._monotonic() - started, self.call_seconds, self._budget):
                    answer = self._provider.send(msg_id, phone, text, 2, token=token)
                    attempts = 2
        if answer.outcome is Outcome.SENT:
            return TestSendResult(phone, TestSendStatus.SENT, None, msg_id, attempts)
        return TestSendResult(phone, TestSendStatus.FAILED, answer.detail, msg_id, attempts)
