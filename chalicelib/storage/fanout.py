"""Fan-out segments' checkpoints and leases (``chalicelib/domain/fanout.py``) behind the
engine's ``FanoutSegments`` (``chalicelib/ports.py``).

Every write is conditional: a claim only takes a segment nobody holds (its lease
lapsed) that is not done; a checkpoint only moves from where its owner read it. So two
workers handed the same segment (a duplicate job, or the dispatcher's watchdog) never
both fan it out, and one that dies leaves the checkpoint of its last page.
"""

from __future__ import annotations

from collections.abc import Sequence

from pynamodb.exceptions import UpdateError

from chalicelib.domain.fanout import SegmentState
from chalicelib.ports import StaleSegment
from chalicelib.storage.models import FanoutSegmentModel
from chalicelib.storage.tasks import CONDITION_FAILED

BATCH_GET = 100  # BatchGetItem's limit


def segment_name(task_id: int, index: int) -> str:
    return f"fanout#{task_id}#{index}"


def _state(index: int, item: FanoutSegmentModel) -> SegmentState:
    return SegmentState(
        index=index,
        cursor=item.cursor,
        done=bool(item.done),
        owner=item.owner,
        lease_until_ms=int(item.lease_until_ms or 0),
        updated_ms=int(item.updated_ms or 0),
    )


class DynamoFanoutSegments:
    def states(self, task_id: int, indexes: Sequence[int]) -> dict[int, SegmentState]:
        by_name = {segment_name(task_id, index): index for index in indexes}
        found: dict[int, SegmentState] = {}
        names = list(by_name)
        for start in range(0, len(names), BATCH_GET):
            for item in FanoutSegmentModel.batch_get(
                names[start : start + BATCH_GET], consistent_read=True
            ):
                index = by_name[str(item.name)]
                found[index] = _state(index, item)
        return found

    def claim(
        self, task_id: int, index: int, *, owner: str, until_ms: int, now_ms: int
    ) -> SegmentState | None:
        item = FanoutSegmentModel(segment_name(task_id, index))
        model = FanoutSegmentModel
        free = model.lease_until_ms.does_not_exist() | (model.lease_until_ms <= now_ms)
        not_done = model.done.does_not_exist() | (model.done == False)  # noqa: E712
        try:
            item.update(
                actions=[
                    model.owner.set(owner),
                    model.lease_until_ms.set(until_ms),
                    model.updated_ms.set(now_ms),
                ],
                condition=free & not_done,
            )
        except UpdateError as error:
            if error.cause_response_code == CONDITION_FAILED:
                return None
            raise
        return _state(index, item)

    def advance(
        self,
        task_id: int,
        state: SegmentState,
        *,
        cursor: str | None,
        done: bool,
        until_ms: int,
        now_ms: int,
    ) -> SegmentState:
        item = FanoutSegmentModel(segment_name(task_id, state.index))
        model = FanoutSegmentModel
        at_cursor = (
            model.cursor.does_not_exist() if state.cursor is None else model.cursor == state.cursor
        )
        try:
            item.update(
                actions=[
                    model.cursor.remove() if cursor is None else model.cursor.set(cursor),
                    model.done.set(done),
                    model.lease_until_ms.set(until_ms),
                    model.updated_ms.set(now_ms),
                ],
                condition=(model.owner == state.owner) & at_cursor,
            )
        except UpdateError as error:
            if error.cause_response_code == CONDITION_FAILED:
                raise StaleSegment from None
            raise
        return _state(state.index, item)
