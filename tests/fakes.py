"""In-memory fakes of what the sending engine talks to (``chalicelib/ports.py``).

They keep the semantics the engine relies on: conditional writes on the generation,
a change stream of the messages (ordered per shard, shards that split, at-least-once
delivery) from which the counts are kept, a queue with delays, visibility and
at-least-once delivery, a provider that de-duplicates nothing. Every call is one I/O step of a
:class:`World`, which can make the caller die (``Crash``) before or after any of them;
the simulation test (``tests/sim``) drives them with a seeded scheduler.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from chalicelib.domain.counting import StatusChange, counter_slot, deltas, not_counted
from chalicelib.domain.fanout import Segment, SegmentState
from chalicelib.domain.lifecycle import Change, MessageState, Timing, created, ms
from chalicelib.domain.messages import message_id
from chalicelib.domain.provider import Outcome, ProviderResult, judge
from chalicelib.domain.ratelimit import RateScope, Reservation, reserve_in
from chalicelib.domain.tasks import Fanout, SendingTask, TaskStatus
from chalicelib.domain.timeline import MinuteCounts, minute_counts
from chalicelib.ports import (
    AudiencePart,
    Counts,
    Created,
    Recipient,
    StaleSegment,
    StaleTask,
    TaskGone,
    WaitingMessage,
)
from chalicelib.queue import FanoutJob, SendJob
from chalicelib.services.counting import StreamCounter
from chalicelib.services.send_batch import Record

COUNTER_SLOTS = 8

# The production defaults (chalicelib/settings.py), for tests of the engine on the fakes.
TIMING = Timing(
    lease=timedelta(seconds=60),
    park_after=timedelta(minutes=15),
    wake_lead=timedelta(seconds=60),
    watchdog=timedelta(seconds=60),
)


class Crash(BaseException):
    """The process dies here: nothing after this point of the handler runs.

    A BaseException so that the engine's ``except Exception`` handlers, which deal with
    errors a live process sees, do not catch it.
    """


class World:
    """The virtual clock and the crash plan shared by every fake."""

    def __init__(self, start: datetime, rng: random.Random) -> None:
        self.now = start
        self.rng = rng
        self.io_steps = 0
        self.crash_at: int | None = None  # the I/O step at which the handler dies
        self.crashes: list[str] = []
        self.on_io: Callable[[str], None] | None = None  # a concurrent actor's hook

    def clock(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.now.timestamp()

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def io(self, name: str) -> None:
        """One I/O step: the handler may die before it, and other actors may act."""
        self._step(f"before {name}")
        if self.on_io is not None:
            self.on_io(name)

    def done(self, name: str) -> None:
        """The I/O step happened; the handler may die before it learns the answer."""
        self._step(f"after {name}")

    def _step(self, where: str) -> None:
        self.io_steps += 1
        if self.crash_at is not None and self.io_steps >= self.crash_at:
            self.crash_at = None
            self.crashes.append(where)
            raise Crash(where)


@dataclass
class StoredMessage:
    task_id: int
    recipient: Recipient
    state: MessageState
    sent_at: datetime | None = None


@dataclass
class StreamShard:
    """A shard of the messages table's stream: records in order; closed when split."""

    shard_id: str
    parent: str | None
    records: list[dict[str, object]] = field(default_factory=list)
    closed: bool = False
    read_up_to: int = 0  # records handled (the event source mapping's checkpoint)


class FakeStream:
    """DynamoDB Streams as the counts see it: each write of a message is one record
    with the status before and after, in its item's shard; a split closes the open
    shards and opens two children (a task's messages then spread over both, by client)."""

    def __init__(self) -> None:
        self.shards: list[StreamShard] = [StreamShard("shard-0", None)]
        self._sequence = 1000
        self._split_for: dict[str, tuple[str, str]] = {}

    def _open_shard(self, client_id: int) -> StreamShard:
        shard = self.shards[0]
        while shard.closed:
            left, right = self._split_for[shard.shard_id]
            name = left if client_id % 2 == 0 else right
            shard = next(s for s in self.shards if s.shard_id == name)
        return shard

    def record(self, task_id: int, client_id: int, before: str | None, after: str | None) -> None:
        self._sequence += 1
        image = lambda status: None if status is None else {"status": {"S": status}}  # noqa: E731
        self._open_shard(client_id).records.append(
            {
                "eventName": "INSERT" if before is None else "MODIFY",
                "dynamodb": {
                    "Keys": {"task_id": {"N": str(task_id)}, "client_id": {"N": str(client_id)}},
                    "SequenceNumber": str(self._sequence),
                    "OldImage": image(before),
                    "NewImage": image(after),
                },
            }
        )

    def split(self) -> None:
        for shard in [s for s in self.shards if not s.closed]:
            shard.closed = True
            left = StreamShard(f"{shard.shard_id}.0", shard.shard_id)
            right = StreamShard(f"{shard.shard_id}.1", shard.shard_id)
            self._split_for[shard.shard_id] = (left.shard_id, right.shard_id)
            self.shards += [left, right]

    def readable(self) -> list[StreamShard]:
        """Shards with records to handle whose parent is done (Lambda's order)."""
        done = {s.shard_id for s in self.shards if s.closed and s.read_up_to == len(s.records)}
        return [
            s
            for s in self.shards
            if s.read_up_to < len(s.records) and (s.parent is None or s.parent in done)
        ]

    def deliver(self, counter: StreamCounter, rng: random.Random) -> None:
        """One batch of one shard, as Lambda's event source mapping hands it over: from
        the checkpoint, in order; the checkpoint moves only past what the handler
        did not report (a crash moves nothing); now and then a batch handled well is
        delivered again anyway, or only its first half is (a bisected retry)."""
        shards = self.readable()
        if not shards:
            return
        shard = rng.choice(shards)
        start = shard.read_up_to
        batch = shard.records[start : start + rng.randint(1, 12)]
        result = counter.handle(shard.shard_id, batch)  # type: ignore[arg-type]
        handled = len(batch)
        if result.failed_sequence is not None:
            sequences = [str(r["dynamodb"]["SequenceNumber"]) for r in batch]  # type: ignore[index]
            handled = sequences.index(result.failed_sequence)
        if rng.random() < 0.1:
            handled = rng.randint(0, handled)  # delivered again, whole or in part
        shard.read_up_to = start + handled

    def drain(self, counter: StreamCounter, rng: random.Random) -> None:
        while self.readable():
            self.deliver(counter, rng)


class FakeCountLedger:
    """The counter items: counts and each shard's mark, one conditional write a batch,
    and the timeline's minute counts of the slot in the same write."""

    def __init__(self, world: World) -> None:
        self._world = world
        self.items: dict[tuple[int, int], tuple[Counter[str], dict[str, int]]] = {}
        self.minutes: dict[tuple[int, int], MinuteCounts] = {}

    def add(self, shard_id: str, task_id: int, changes: Sequence[StatusChange]) -> None:
        self._world.io("counters.add")
        key = (task_id, counter_slot(shard_id, COUNTER_SLOTS))
        counts, marks = self.items.setdefault(key, (Counter(), {}))
        todo = not_counted(changes, marks.get(shard_id))
        if todo:
            counts.update(deltas(todo))
            marks[shard_id] = max(change.sequence for change in todo)
            slot_minutes = self.minutes.setdefault(key, {})
            for minute, moved in minute_counts(todo).items():
                slot_minutes.setdefault(minute, Counter()).update(moved)
        self._world.done("counters.add")

    def timeline(self, task_id: int) -> MinuteCounts:
        total: MinuteCounts = {}
        for (owner, _), minutes in self.minutes.items():
            if owner == task_id:
                for minute, moved in minutes.items():
                    total.setdefault(minute, Counter()).update(moved)
        return total

    def counts(self, task_id: int) -> Counter[str]:
        total: Counter[str] = Counter()
        for (owner, _), (counts, _) in self.items.items():
            if owner == task_id:
                total.update(counts)
        return total


class FakeMessages:
    def __init__(self, world: World, tasks: FakeTasks) -> None:
        self._world = world
        self._tasks = tasks
        self.items: dict[tuple[int, int], StoredMessage] = {}
        self.stream = FakeStream()
        self.ledger = FakeCountLedger(world)
        self.counter = StreamCounter(self.ledger)

    def create(
        self,
        task_id: int,
        recipients: Sequence[Recipient],
        now: datetime,
        *,
        expires_at: datetime | None = None,
    ) -> Created:
        self._world.io("messages.create")
        task = self._tasks.items.get(task_id)
        if task is None or task.deleted:
            raise TaskGone
        made, existing = [], []
        for recipient in recipients:
            key = (task_id, recipient.client_id)
            if key in self.items:
                existing.append(recipient)
                continue
            self.items[key] = StoredMessage(task_id, recipient, created(recipient.client_id))
            self.stream.record(task_id, recipient.client_id, None, "pending")
            made.append(recipient)
        self._world.done("messages.create")
        return Created(made, existing)

    def states(self, task_id: int, client_ids: Sequence[int]) -> dict[int, MessageState]:
        self._world.io("messages.states")
        found = {
            client_id: self.items[(task_id, client_id)].state
            for client_id in set(client_ids)
            if (task_id, client_id) in self.items
        }
        self._world.done("messages.states")
        return found

    def apply(
        self,
        task_id: int,
        changes: Sequence[Change],
        now: datetime,
        *,
        expires_at: datetime | None = None,
    ) -> set[int]:
        self._world.io("messages.apply")
        written = set()
        for change in changes:
            stored = self.items.get((task_id, change.client_id))
            if stored is None or not stored.state.pending:
                continue
            if not change.outcome_only and stored.state.generation != change.expect_generation:
                continue
            self.stream.record(
                task_id, change.client_id, stored.state.status.value, change.after.status.value
            )
            generation = max(stored.state.generation, change.after.generation)
            stored.state = replace(change.after, generation=generation)
            if change.sent:
                stored.sent_at = now
            written.add(change.client_id)
        self._world.done("messages.apply")
        return written

    def waiting(
        self, task_id: int, *, wake_before_ms: int | None, cursor: str | None, limit: int
    ) -> tuple[list[WaitingMessage], str | None]:
        self._world.io("messages.waiting")
        # Like an index query: in key order, from after the cursor's key.
        after = tuple(int(part) for part in cursor.split(":")) if cursor else None
        found = sorted(
            (
                (m.state.wake_ms, m.recipient.client_id, m)
                for m in self.items.values()
                if m.task_id == task_id
                and m.state.pending
                and m.state.wake_ms is not None
                and (wake_before_ms is None or m.state.wake_ms <= wake_before_ms)
            ),
            key=lambda row: (row[0], row[1]),
        )
        found = [row for row in found if after is None or (row[0], row[1]) > after]
        page = found[:limit]
        more = f"{page[-1][0]}:{page[-1][1]}" if len(found) > limit else None
        self._world.done("messages.waiting")
        return [WaitingMessage(m.state, m.recipient) for _, _, m in page], more

    def pending(
        self, task_id: int, *, cursor: str | None, limit: int
    ) -> tuple[list[MessageState], str | None]:
        """Like a filtered Query: the pending among the next ``limit`` messages."""
        self._world.io("messages.pending")
        after = int(cursor) if cursor else 0
        read = sorted(
            (
                m
                for m in self.items.values()
                if m.task_id == task_id and m.recipient.client_id > after
            ),
            key=lambda m: m.recipient.client_id,
        )
        page = read[:limit]
        more = str(page[-1].recipient.client_id) if len(read) > limit else None
        self._world.done("messages.pending")
        return [m.state for m in page if m.state.pending], more

    def has_pending(self, task_id: int) -> bool:
        self._world.io("messages.has_pending")
        found = any(m.task_id == task_id and m.state.pending for m in self.items.values())
        self._world.done("messages.has_pending")
        return found

    def counts(self, task_ids: Sequence[int]) -> dict[int, Counts]:
        self._world.io("messages.counts")
        answer = {}
        for task_id in task_ids:
            c = self.ledger.counts(task_id)
            answer[task_id] = Counts(
                total=c["total"],
                pending=c["pending"],
                sent=c["sent"],
                failed=c["failed"],
                expired=c["expired"],
                cancelled=c["cancelled"],
                suppressed=c["suppressed"],
            )
        self._world.done("messages.counts")
        return answer

    def recount(self, task_id: int) -> Counts:
        """What the counts should say: the messages' statuses, counted (no I/O)."""
        statuses = Counter(
            m.state.status.value for m in self.items.values() if m.task_id == task_id
        )
        return Counts(
            total=sum(statuses.values()),
            pending=statuses["pending"],
            sent=statuses["sent"],
            failed=statuses["failed"],
            expired=statuses["expired"],
            cancelled=statuses["cancelled"],
            suppressed=statuses["suppressed"],
        )


class FakeTasks:
    def __init__(self, world: World) -> None:
        self._world = world
        self.items: dict[int, SendingTask] = {}
        self.deleted_at: dict[int, datetime] = {}
        self.closed: set[int] = set()  # cancelled tasks with nothing pending
        # When the API answered a pause or cancel of each task (the last one).
        self.held_at: dict[int, datetime] = {}

    def add(self, task: SendingTask) -> None:
        self.items[task.id] = task

    def get(self, task_id: int) -> SendingTask | None:
        self._world.io("tasks.get")
        task = self.items.get(task_id)
        self._world.done("tasks.get")
        return None if task is None or task.deleted else task

    def due(self, now: datetime) -> list[SendingTask]:
        self._world.io("tasks.due")
        found = [
            t
            for t in self.items.values()
            if not t.deleted
            and t.status is not TaskStatus.FINISHED
            and t.id not in self.closed
            and t.start <= now
        ]
        self._world.done("tasks.due")
        return found

    def _write(self, task: SendingTask, new: SendingTask, *, check_version: bool) -> None:
        stored = self.items.get(task.id)
        if stored is None or stored.deleted:
            raise StaleTask
        if check_version and stored.version != task.version:
            raise StaleTask
        self.items[task.id] = new

    def set_status(self, task: SendingTask, status: TaskStatus, now: datetime) -> SendingTask:
        self._world.io("tasks.set_status")
        stored = self.items.get(task.id)
        version = ((stored or task).version or 0) + 1
        new = replace(stored or task, status=status, version=version)
        self._write(task, new, check_version=True)
        if status is TaskStatus.CANCELLED:
            self.closed.add(task.id)
        self._world.done("tasks.set_status")
        return new

    def plan_fanout(
        self, task: SendingTask, *, max_id: int, ranks: int, now: datetime
    ) -> SendingTask:
        self._world.io("tasks.plan_fanout")
        stored = self.items.get(task.id)
        if stored is None or stored.deleted or stored.fanout.planned:
            raise StaleTask
        new = replace(stored, fanout=Fanout(False, max_id, ranks), fanout_at_ms=ms(now))
        self.items[task.id] = new
        self._world.done("tasks.plan_fanout")
        return replace(task, fanout=new.fanout, fanout_at_ms=new.fanout_at_ms)

    def finish_fanout(self, task: SendingTask, now: datetime) -> SendingTask:
        self._world.io("tasks.finish_fanout")
        stored = self.items.get(task.id)
        if stored is None or stored.deleted:
            raise StaleTask
        fanout = replace(stored.fanout, done=True)
        self.items[task.id] = replace(stored, fanout=fanout, fanout_at_ms=ms(now))
        self._world.done("tasks.finish_fanout")
        return replace(task, fanout=fanout, fanout_at_ms=ms(now))

    def clear_rejudge(self, task: SendingTask) -> None:
        self._world.io("tasks.clear_rejudge")
        stored = self.items.get(task.id)
        if stored is not None and stored.version == task.version:
            self.items[task.id] = replace(stored, rejudge=False)
        self._world.done("tasks.clear_rejudge")

    def mark_first_send(self, task_id: int, at: datetime) -> bool:
        self._world.io("tasks.mark_first_send")
        stored = self.items.get(task_id)
        if stored is None or stored.first_sent:
            return False
        self.items[task_id] = replace(stored, first_sent=True)
        self._world.done("tasks.mark_first_send")
        return True

    # What the API does (the task service), without I/O steps of its own.

    def patch(self, task_id: int, now: datetime, **changes: object) -> SendingTask | None:
        stored = self.items.get(task_id)
        if stored is None or stored.deleted:
            return None
        rejudge = stored.status is not TaskStatus.SCHEDULED
        version = (stored.version or 0) + 1
        new = replace(stored, rejudge=rejudge, version=version, **changes)  # type: ignore[arg-type]
        self.items[task_id] = new
        return new

    def control(self, task_id: int, now: datetime, status: TaskStatus) -> SendingTask | None:
        """Pause (PAUSED), resume (SCHEDULED or RUNNING: waiting messages are judged
        again) or cancel (CANCELLED), as the task service stores them."""
        stored = self.items.get(task_id)
        if stored is None or stored.deleted:
            return None
        resumed = stored.status is TaskStatus.PAUSED and status in (
            TaskStatus.SCHEDULED,
            TaskStatus.RUNNING,
        )
        version = (stored.version or 0) + 1
        new = replace(stored, status=status, rejudge=stored.rejudge or resumed, version=version)
        self.items[task_id] = new
        if status in (TaskStatus.PAUSED, TaskStatus.CANCELLED):
            self.held_at[task_id] = now
        return new

    def delete(self, task_id: int, now: datetime) -> None:
        stored = self.items.get(task_id)
        if stored is not None and not stored.deleted:
            self.items[task_id] = replace(stored, deleted=True, version=(stored.version or 0) + 1)
            self.deleted_at[task_id] = now


class FakeAudience:
    def __init__(self, world: World, clients: list[tuple[Recipient, str, str]]) -> None:
        """``clients``: (recipient, code, tag)."""
        self._world = world
        self.clients = clients

    def max_client_id(self) -> int:
        self._world.io("audience.max_client_id")
        highest = max((r.client_id for r, _, _ in self.clients), default=0)
        self._world.done("audience.max_client_id")
        return highest

    def page(
        self,
        part: AudiencePart,
        segment: Segment,
        cursor: str | None,
        tags: Sequence[str],
        size: int,
    ) -> tuple[list[Recipient], str | None]:
        self._world.io("audience.page")
        if part.kind == "all":
            # A parallel scan's segment: spread by hash, not by id.
            inside = [
                entry
                for entry in self.clients
                if entry[0].client_id <= segment.max_id
                and entry[0].client_id % segment.ranks == segment.rank
            ]
        else:
            inside = [e for e in self.clients if segment.lo <= e[0].client_id <= segment.hi]
        if part.kind == "code":
            everyone = [r for r, code, _ in inside if code == part.value]
            members = [
                r for r, code, tag in inside if code == part.value and (not tags or tag in tags)
            ]
            # Like a DynamoDB filter: the page is read in full, then filtered.
            return self._filtered_page(everyone, set(members), cursor, size)
        if part.kind == "tag":
            members = [r for r, _, tag in inside if tag == part.value]
        else:
            members = [r for r, _, _ in inside]
        return self._filtered_page(members, set(members), cursor, size)

    def _filtered_page(
        self, walk: list[Recipient], keep: set[Recipient], cursor: str | None, size: int
    ) -> tuple[list[Recipient], str | None]:
        start = int(cursor or 0)
        page = walk[start : start + size]
        after = str(start + size) if start + size < len(walk) else None
        self._world.done("audience.page")
        return [r for r in page if r in keep], after


class FakeSegments:
    """Fan-out segments' checkpoints and leases, with the conditions of
    ``chalicelib/storage/fanout.py``."""

    def __init__(self, world: World) -> None:
        self._world = world
        self.items: dict[tuple[int, int], SegmentState] = {}

    def states(self, task_id: int, indexes: Sequence[int]) -> dict[int, SegmentState]:
        self._world.io("segments.states")
        found = {i: self.items[(task_id, i)] for i in indexes if (task_id, i) in self.items}
        self._world.done("segments.states")
        return found

    def claim(
        self, task_id: int, index: int, *, owner: str, until_ms: int, now_ms: int
    ) -> SegmentState | None:
        self._world.io("segments.claim")
        stored = self.items.get((task_id, index), SegmentState(index))
        if stored.done or not stored.free(now_ms):
            return None
        new = replace(stored, owner=owner, lease_until_ms=until_ms, updated_ms=now_ms)
        self.items[(task_id, index)] = new
        self._world.done("segments.claim")
        return new

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
        self._world.io("segments.advance")
        stored = self.items.get((task_id, state.index))
        if stored is None or stored.owner != state.owner or stored.cursor != state.cursor:
            raise StaleSegment
        new = replace(stored, cursor=cursor, done=done, lease_until_ms=until_ms, updated_ms=now_ms)
        self.items[(task_id, state.index)] = new
        self._world.done("segments.advance")
        return new


class FakeRateLimiter:
    """The shared rate limits (``chalicelib/domain/ratelimit.py``): each scope's TAT in
    memory, moved by the same arithmetic as ``chalicelib/storage/ratelimit.py``'s
    conditional writes. It uses the ``now`` it is given, never a clock of its own; with
    a :class:`World`, a reservation is one I/O step (a crash after it loses its slots)."""

    def __init__(
        self, world: World | None = None, horizon: timedelta = timedelta(seconds=0.25)
    ) -> None:
        self._world = world
        self.horizon = horizon
        self.tats: dict[str, int] = {}
        self.reservations = 0

    def reserve(
        self, scopes: Sequence[RateScope], count: int, now: datetime, *, at_least: int = 1
    ) -> Reservation:
        if self._world is not None:
            self._world.io("rate.reserve")
        self.reservations += 1
        reservation = reserve_in(self.tats, scopes, count, now, self.horizon, at_least=at_least)
        if self._world is not None:
            self._world.done("rate.reserve")
        return reservation


@dataclass
class FakeFanoutQueue:
    """The fan-out workers' queue: jobs with a delay; at-least-once."""

    world: World
    jobs: list[tuple[datetime, FanoutJob]] = field(default_factory=list)

    def send(self, jobs: Sequence[FanoutJob], delay_seconds: float = 0) -> None:
        self.world.io("fanout_queue.send")
        visible = self.world.now + timedelta(seconds=math.ceil(delay_seconds))
        self.jobs += [(visible, job) for job in jobs]
        self.world.done("fanout_queue.send")

    def take(self, rng: random.Random) -> FanoutJob | None:
        """A visible job, any of them (SQS keeps no order), removed (its worker deletes
        it whatever happens: a crash is covered by the dispatcher's watchdog)."""
        ready = [i for i, (at, _) in enumerate(self.jobs) if at <= self.world.now]
        if not ready:
            return None
        return self.jobs.pop(rng.choice(ready))[1]


@dataclass
class QueuedJob:
    body: str
    visible_at: datetime
    receipt: int = 0
    receives: int = 0


@dataclass
class FakeQueue:
    """SQS, as the engine sees it: delays, a visibility timeout, at-least-once."""

    world: World
    max_delay_seconds: int = 900
    visibility: timedelta = timedelta(seconds=30)
    jobs: dict[int, QueuedJob] = field(default_factory=dict)
    _next: int = 0

    def send(
        self, jobs: Sequence[SendJob], delay_seconds: float = 0, *, now_ms: int | None = None
    ) -> None:
        for start in range(0, len(jobs), 10):
            self.world.io("queue.send")
            for job in jobs[start : start + 10]:
                delay = delay_seconds
                if now_ms is not None and job.not_before_ms is not None:
                    delay = (job.not_before_ms - now_ms) / 1000
                delay = min(max(math.ceil(delay), 0), self.max_delay_seconds)
                self._next += 1
                self.jobs[self._next] = QueuedJob(
                    job.to_body(), self.world.now + timedelta(seconds=delay)
                )
            self.world.done("queue.send")

    def depth(self) -> int:
        self.world.io("queue.depth")
        ready = sum(1 for j in self.jobs.values() if j.visible_at <= self.world.now)
        self.world.done("queue.depth")
        return ready

    def receive(self, limit: int, rng: random.Random) -> list[tuple[int, QueuedJob]]:
        """Up to ``limit`` visible jobs, in no particular order; they turn invisible."""
        visible = [(key, job) for key, job in self.jobs.items() if job.visible_at <= self.world.now]
        rng.shuffle(visible)
        taken = visible[:limit]
        for _, job in taken:
            job.receives += 1
            job.visible_at = self.world.now + self.visibility
        return taken

    def delete(self, key: int) -> None:
        self.jobs.pop(key, None)

    def bodies(self) -> list[SendJob]:
        return [SendJob.from_body(job.body) for job in self.jobs.values()]


@dataclass
class ProviderCall:
    msg_id: int
    arrived: datetime
    accepted: bool
    phone: str = ""


class FakeStopList:
    """The stop list as the sender reads it (``StopList.stopped``); the operator's
    changes come through ``stop``/``unstop``, without I/O steps of their own."""

    def __init__(self, world: World) -> None:
        self._world = world
        self.since: dict[str, datetime] = {}  # phone -> when it was stopped

    def stop(self, phone: str) -> None:
        self.since.setdefault(phone, self._world.now)

    def unstop(self, phone: str) -> None:
        self.since.pop(phone, None)

    def stopped(self, phones: Sequence[str]) -> set[str]:
        self._world.io("stoplist.stopped")
        found = {phone for phone in phones if phone in self.since}
        self._world.done("stoplist.stopped")
        return found


@dataclass
class FakeProvider:
    """The external send API: answers by a seeded mix; hangs move the virtual clock."""

    world: World
    mix: dict[str, float]
    connect_timeout: float = 2.0
    read_timeout: float = 5.0
    calls: list[ProviderCall] = field(default_factory=list)

    def warm(self) -> str:
        self.world.io("provider.token")
        self.world.done("provider.token")
        return "token"

    def send(
        self, message_id: int, phone: str, text: str, attempt: int = 1, *, token: str = ""
    ) -> ProviderResult:
        self.world.io("provider.send")
        rng = self.world.rng
        # The request reaches the provider after a connect of up to the timeout.
        self.world.advance(rng.uniform(0, self.connect_timeout) * 0.99)
        mode = rng.choices(list(self.mix), weights=list(self.mix.values()))[0]
        self.calls.append(ProviderCall(message_id, self.world.now, mode == "ok", phone))
        if mode == "hang":
            self.world.advance(self.read_timeout)
            result = ProviderResult(Outcome.RETRY, None, "timeout")
        elif mode == "ok":
            self.world.advance(rng.uniform(0.01, 0.3))
            result = judge(200, {"code": 0, "message": "OK"})
        elif mode == "garbage":
            result = judge(200, None)
        else:
            result = judge(int(mode), {"code": int(mode)})
        self.world.done("provider.send")
        return result


def job_records(task_id: int, recipients: Sequence[Recipient]) -> list[Record]:
    """Queue records of each recipient's first job for ``task_id`` (generation 0)."""
    return [
        Record(
            f"r{recipient.client_id}",
            SendJob(
                message_id=message_id(task_id, recipient.client_id),
                task_id=task_id,
                client_id=recipient.client_id,
                phone=recipient.phone,
                utc=recipient.utc,
            ).to_body(),
        )
        for recipient in recipients
    ]


def make_task(
    task_id: int,
    *,
    start: datetime,
    end: datetime,
    codes: tuple[str, ...] = (),
    tags: tuple[str, ...] = (),
    window: object = None,
) -> SendingTask:
    return SendingTask(
        id=task_id,
        start=start,
        end=end,
        text=f"text of {task_id}",
        codes=codes,
        tags=tags,
        window=window,  # type: ignore[arg-type]
        status=TaskStatus.SCHEDULED,
        deleted=False,
        fanout=Fanout(),
        rejudge=False,
        first_sent=False,
        fanout_at_ms=0,
        created_at=datetime(2000, 1, 1, tzinfo=UTC),
        updated_at=datetime(2000, 1, 1, tzinfo=UTC),
        version=1,
    )
