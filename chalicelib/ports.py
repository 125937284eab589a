"""What the services need from the outside world, as interfaces.

The services are handed these by ``bootstrap``: DynamoDB and SQS implementations in
``chalicelib/storage`` and ``chalicelib/queue.py``; the sending engine's have in-memory
fakes in the tests (``tests/fakes.py``), which the simulation test drives step by step.
Storage speaks in domain values and in the exceptions below, never in API wording.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from chalicelib.domain.api_keys import StoredKey
from chalicelib.domain.audience import CountKey
from chalicelib.domain.clients import Client, ClientProfile
from chalicelib.domain.counting import StatusChange
from chalicelib.domain.exports import ExportRecord, ExportRow, Part
from chalicelib.domain.fanout import Segment, SegmentState
from chalicelib.domain.imports import ImportRecord, ImportStamp
from chalicelib.domain.lifecycle import Change, MessageState
from chalicelib.domain.messages import Message, MessageStatus
from chalicelib.domain.provider import ProviderResult
from chalicelib.domain.ratelimit import RateScope, Reservation
from chalicelib.domain.stoplist import StopEntry
from chalicelib.domain.tasks import SendingTask, Task, TaskPlan, TaskStatus
from chalicelib.domain.timeline import MinuteCounts
from chalicelib.queue import FanoutJob, SendJob

ItemT = TypeVar("ItemT")


class TaskGone(Exception):
    """The task was deleted: nothing more may be created or sent for it."""


class PartialWrite(Exception):
    """Some of the changes could not be written (an error, not a refused condition):
    ``written`` were, ``failed`` were not; the rest were refused."""

    def __init__(self, written: set[int], failed: set[int]) -> None:
        super().__init__(f"{len(failed)} message writes failed")
        self.written = written
        self.failed = failed


class StaleTask(Exception):
    """The task changed since it was read; the caller re-reads and decides again."""


class StaleSegment(Exception):
    """The fan-out segment moved on, or another worker holds it: this worker stops."""


class StaleClient(Exception):
    """The client changed since it was read; the caller re-reads and decides again."""


class PhoneTaken(Exception):
    """Another client holds the phone."""


class StaleImport(Exception):
    """An import record changed since it was read: another runner moved its checkpoint."""


class StaleExport(Exception):
    """An export's checkpoint was moved by another runner since it was read."""


class AlreadyStopped(Exception):
    """The phone is on the stop list already."""


class KeyTaken(Exception):
    """A key with this digest is already registered."""


@dataclass(frozen=True)
class Page(Generic[ItemT]):
    """One page of a list, and the cursor of the next (None on the last page)."""

    items: list[ItemT]
    next: str | None


@dataclass(frozen=True)
class Recipient:
    """A client as a message needs it: copied into the message and its jobs at fan-out."""

    client_id: int
    phone: str
    utc: str


@dataclass(frozen=True)
class WaitingMessage:
    """A message the dispatcher may have to wake, with what its next job carries."""

    state: MessageState
    recipient: Recipient


@dataclass(frozen=True)
class Created:
    created: list[Recipient]  # messages written now
    existing: list[Recipient]  # messages an earlier (interrupted) run had written


@dataclass(frozen=True)
class Counts:
    total: int = 0
    pending: int = 0
    sent: int = 0
    failed: int = 0
    expired: int = 0
    cancelled: int = 0
    suppressed: int = 0

    def by_status(self) -> dict[str, int]:
        return {status.value: getattr(self, status.value) for status in MessageStatus}


@dataclass(frozen=True)
class AudiencePart:
    """One index partition of a task's audience: a code, a tag, or everyone."""

    kind: str
    value: str | None


def audience_parts(codes: Sequence[str], tags: Sequence[str]) -> list[AudiencePart]:
    # codes OR-ed, tags OR-ed, the two AND-ed: with codes, walk each code's partition and
    # keep the listed tags; with tags only, walk each tag's; with neither, everyone.
    if codes:
        return [AudiencePart("code", code) for code in sorted(set(codes))]
    if tags:
        return [AudiencePart("tag", tag) for tag in sorted(set(tags))]
    return [AudiencePart("all", None)]


class MessageRepository(Protocol):
    """``expires_at``: the TTL stamp each write carries (``chalicelib/domain/retention.py``);
    None leaves the stored one."""

    def create(
        self,
        task_id: int,
        recipients: Sequence[Recipient],
        now: datetime,
        *,
        expires_at: datetime | None = None,
    ) -> Created:
        """One pending message per recipient, with the counts; TaskGone if deleted."""
        ...

    def states(self, task_id: int, client_ids: Sequence[int]) -> dict[int, MessageState]:
        """The stored state of these messages, read consistently."""
        ...

    def apply(
        self,
        task_id: int,
        changes: Sequence[Change],
        now: datetime,
        *,
        expires_at: datetime | None = None,
    ) -> set[int]:
        """Write each change whose condition still holds (with the counts when a status
        changes); return the client ids written."""
        ...

    def waiting(
        self, task_id: int, *, wake_before_ms: int | None, cursor: str | None, limit: int
    ) -> tuple[list[WaitingMessage], str | None]:
        """Messages with a wake time before ``wake_before_ms`` (all with one when None)."""
        ...

    def pending(
        self, task_id: int, *, cursor: str | None, limit: int
    ) -> tuple[list[MessageState], str | None]:
        """The task's pending messages among the next ``limit`` of its messages (the
        sweep at the end): a page may hold fewer, even none, with a cursor after it."""
        ...

    def has_pending(self, task_id: int) -> bool:
        """Whether any message of the task is pending, read from the messages themselves
        (the counts follow the stream, a moment behind)."""
        ...

    def counts(self, task_ids: Sequence[int]) -> dict[int, Counts]: ...


class CountLedger(Protocol):
    def add(self, shard_id: str, task_id: int, changes: Sequence[StatusChange]) -> None:
        """Count the changes of one task from one stream shard (in the shard's order)
        that its counters have not counted yet, and move the shard's mark past them, in
        one conditional write: a batch delivered again counts nothing twice."""
        ...


class TaskRepository(Protocol):
    def get(self, task_id: int) -> SendingTask | None:
        """The task, or None if it never existed or was deleted."""
        ...

    def due(self, now: datetime) -> list[SendingTask]:
        """Unfinished tasks whose start has passed (ended ones included: finishing is due)."""
        ...

    def set_status(self, task: SendingTask, status: TaskStatus, now: datetime) -> SendingTask:
        """StaleTask if it changed since read."""
        ...

    def plan_fanout(
        self, task: SendingTask, *, max_id: int, ranks: int, now: datetime
    ) -> SendingTask:
        """Record the segments' plan once; StaleTask if another run planned it first."""
        ...

    def finish_fanout(self, task: SendingTask, now: datetime) -> SendingTask:
        """Every segment is done (idempotent)."""
        ...

    def clear_rejudge(self, task: SendingTask) -> None: ...

    def mark_first_send(self, task_id: int, at: datetime) -> bool: ...


class DeletedTaskData(Protocol):
    """What is left of deleted tasks, for the dispatcher's purge pass."""

    def deleted_tasks(self, limit: int) -> list[int]:
        """Deleted tasks whose messages are still to be removed (a query, not a scan)."""
        ...

    def remove_messages(self, task_id: int, limit: int) -> int:
        """Delete up to ``limit`` of the task's messages; the number deleted (0: none left)."""
        ...

    def remove_timeline(self, task_id: int, limit: int) -> int:
        """Delete the timeline's items of up to ``limit`` of the task's (slot, day) pairs;
        the number of pairs removed (0: none left). Before ``remove_counts``, whose
        counter items list the days."""
        ...

    def remove_counts(self, task_id: int) -> None: ...

    def purged(self, task_id: int) -> None:
        """Done: the task is no longer listed by ``deleted_tasks``."""
        ...


class Audience(Protocol):
    def max_client_id(self) -> int:
        """The highest client id given so far (0 with no client)."""
        ...

    def page(
        self,
        part: AudiencePart,
        segment: Segment,
        cursor: str | None,
        tags: Sequence[str],
        size: int,
    ) -> tuple[list[Recipient], str | None]:
        """One page of the segment's ids in the part, from ``cursor``: the matching
        clients and the cursor after it (None at the segment's end)."""
        ...


class FanoutSegments(Protocol):
    """Each fan-out segment's checkpoint and lease (``chalicelib/domain/fanout.py``)."""

    def states(self, task_id: int, indexes: Sequence[int]) -> dict[int, SegmentState]:
        """The stored states, read consistently; a segment never claimed is absent."""
        ...

    def claim(
        self, task_id: int, index: int, *, owner: str, until_ms: int, now_ms: int
    ) -> SegmentState | None:
        """Hold the segment until ``until_ms`` if nobody does and it is not done;
        None otherwise."""
        ...

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
        """Move the checkpoint from ``state``'s, still held by its owner (the lease
        renewed to ``until_ms``; 0 lets it go); StaleSegment if either changed."""
        ...


class FanoutQueue(Protocol):
    def send(self, jobs: Sequence[FanoutJob], delay_seconds: float = 0) -> None: ...


class JobQueue(Protocol):
    def send(
        self, jobs: Sequence[SendJob], delay_seconds: float = 0, *, now_ms: int | None = None
    ) -> None: ...

    def depth(self) -> int:
        """Jobs ready to be received now (delayed and in-flight ones not counted)."""
        ...


class RateLimiter(Protocol):
    """Send rate limits shared by every sender (``chalicelib/domain/ratelimit.py``)."""

    def reserve(
        self, scopes: Sequence[RateScope], count: int, now: datetime, *, at_least: int = 1
    ) -> Reservation:
        """Reserve up to ``count`` provider calls through every scope in order (a task's,
        then ``all``): the call times granted, sorted, each within the horizon of ``now``
        (the caller calls at, not before, each), and when fewer were granted, when asking
        again may succeed. A scope with room for fewer than ``at_least`` grants none. No
        scope grants everything at ``now``. Slots not used are not given back."""
        ...


class Provider(Protocol):
    @property
    def connect_timeout(self) -> float:
        """A call may take this long to reach the provider after the last check."""
        ...

    @property
    def read_timeout(self) -> float:
        """And this long more to answer."""
        ...

    def warm(self) -> str:
        """Do the slow preparation (the token read) before the last check; the token."""
        ...

    def send(
        self, message_id: int, phone: str, text: str, attempt: int = 1, *, token: str
    ) -> ProviderResult:
        """Call with ``token`` as it was when the last check passed: nothing slow
        happens between that check and the request."""
        ...


# --- what the API's services need -----------------------------------------------------
# Lists raise InvalidCursor (chalicelib/errors.py) for a cursor they did not hand out.


class ClientRepository(Protocol):
    def get(self, client_id: int) -> Client | None: ...

    def create(self, profile: ClientProfile, now: datetime) -> Client:
        """A new client with a new id; PhoneTaken if another client has the phone."""
        ...

    def update(self, client: Client, profile: ClientProfile, now: datetime) -> Client:
        """Store ``profile`` if the client is as read; StaleClient if it changed since,
        PhoneTaken if the new phone belongs to another client."""
        ...

    def delete(self, client: Client) -> None:
        """Delete it and free its phone; StaleClient if it changed since read."""
        ...

    def page(
        self, *, code: str | None, tag: str | None, limit: int, cursor: str | None
    ) -> Page[Client]:
        """Clients with this code and/or tag (all of them without either), by id."""
        ...


class ImportClients(Protocol):
    """The client writes of a bulk import: ClientRepository's, with the row's stamp."""

    def by_phones(self, phones: Sequence[str]) -> dict[str, tuple[Client, ImportStamp | None]]:
        """The clients holding these phones (at most 100), each with its import stamp."""
        ...

    def new_ids(self, count: int) -> Sequence[int]:
        """``count`` client ids for ``create``, taken in one write."""
        ...

    def create_many(
        self, rows: Sequence[tuple[ClientProfile, ImportStamp, int]], now: datetime
    ) -> bool:
        """New clients (at most 50: two items each), all or none in one transaction;
        False when a phone was taken meanwhile (nothing written)."""
        ...

    def create(
        self,
        profile: ClientProfile,
        now: datetime,
        stamp: ImportStamp | None = None,
        client_id: int | None = None,
    ) -> Client:
        """A stamped (deferred) write leaves the audience counters to the checkpoint."""
        ...

    def update(
        self,
        client: Client,
        profile: ClientProfile,
        now: datetime,
        stamp: ImportStamp | None = None,
    ) -> Client: ...


class ImportRepository(Protocol):
    def new_id(self) -> int: ...

    def add(self, record: ImportRecord) -> None: ...

    def get(self, import_id: int) -> ImportRecord | None: ...

    def save(
        self, record: ImportRecord, now_ms: int, counts: Mapping[CountKey, int] | None = None
    ) -> ImportRecord:
        """Store it if the stored record is still at ``record.version`` (StaleImport if
        not); the answer carries the new version. ``counts``: audience counter deltas
        added in the same transaction (a chunk's, ``CHECKPOINT_COUNTERS`` at most)."""
        ...


class ImportFiles(Protocol):
    """The import bucket (``chalicelib/bucket.py``)."""

    def upload_url(self, key: str, expires_seconds: int) -> str: ...

    def download_url(self, key: str, expires_seconds: int) -> str: ...

    def head(self, key: str) -> tuple[str, int] | None:
        """The object's ETag and size in bytes, None when there is no such object."""
        ...

    def chunks(self, key: str, etag: str, offset: int) -> Iterator[bytes]:
        """The object's bytes from ``offset``, streamed; FileReplaced if it is no longer
        the object with ``etag``."""
        ...

    def put(self, key: str, body: bytes) -> None: ...

    def read(self, key: str) -> bytes:
        """A small object's bytes (a report part)."""
        ...

    def start_upload(self, key: str) -> str:
        """A new multipart upload's id."""
        ...

    def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> str:
        """The part's ETag; PartsLost if the upload is gone."""
        ...

    def complete_upload(self, key: str, upload_id: str, parts: Sequence[Part]) -> None:
        """PartsLost if the upload is gone or a part is not the one named."""
        ...


class ExportRepository(Protocol):
    def new_id(self) -> int: ...

    def task_exists(self, task_id: int) -> bool: ...

    def add(self, record: ExportRecord) -> None: ...

    def get(self, export_id: int) -> ExportRecord | None: ...

    def save(self, record: ExportRecord, now_ms: int) -> ExportRecord:
        """Store it if the stored record is still at ``record.version`` (StaleExport if
        not); the stored record, its version moved on."""
        ...

    def rows(
        self, task_id: int, after_client_id: int | None, limit: int
    ) -> tuple[list[ExportRow], bool]:
        """The task's messages after ``after_client_id`` in key order (at most
        ``limit``), and whether more may follow."""
        ...


class ExportFiles(Protocol):
    """The bucket's ``exports/`` (``chalicelib/bucket.py``)."""

    def download_url(self, key: str, expires_seconds: int) -> str: ...

    def put(self, key: str, body: bytes) -> None: ...

    def start_upload(self, key: str) -> str:
        """A new multipart upload's id."""
        ...

    def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> str:
        """The part's ETag."""
        ...

    def complete_upload(self, key: str, upload_id: str, parts: Sequence[Part]) -> None:
        """PartsLost if a part is not the one the checkpoint names."""
        ...

    def abort_upload(self, key: str, upload_id: str) -> None: ...


class PartsLost(Exception):
    """A multipart upload's parts are not those its checkpoint names (another runner
    overwrote one with other bytes, or the upload was aborted)."""


class FileReplaced(Exception):
    """The file changed since the import started (another upload to its URL)."""


class ApiKeyRepository(Protocol):
    def add(self, key: StoredKey) -> None:
        """KeyTaken if its digest is registered already."""
        ...

    def get(self, key_id: str) -> StoredKey | None: ...

    def revoke(self, key_id: str, now: datetime) -> StoredKey | None:
        """The key, now revoked; None if there is no such key."""
        ...

    def all(self) -> Iterator[StoredKey]: ...


class TaskCatalog(Protocol):
    """The tasks as the API manages them (the engine's view is ``TaskRepository``)."""

    def get(self, task_id: int) -> Task | None:
        """The task, or None if it never existed or was deleted."""
        ...

    def create(self, plan: TaskPlan, status: TaskStatus, now: datetime) -> Task: ...

    def update(self, task: Task, plan: TaskPlan, now: datetime, *, rejudge: bool) -> Task:
        """Store ``plan`` if the task is as read (StaleTask otherwise); ``rejudge`` has the
        engine judge its waiting messages again."""
        ...

    def set_control(self, task: Task, status: TaskStatus, now: datetime, *, rejudge: bool) -> Task:
        """Store an operator's pause, resume or cancel: StaleTask if the task changed
        since ``task`` was read; ``rejudge`` has waiting messages judged again."""
        ...

    def delete(self, task_id: int, now: datetime) -> bool:
        """Leave a tombstone senders see; False if there was no live task."""
        ...

    def page(self, *, limit: int, cursor: str | None) -> Page[Task]: ...


class MessageStats(Protocol):
    def counts(self, task_ids: Sequence[int]) -> dict[int, Counts]: ...

    def page(
        self, task_id: int, *, status: MessageStatus | None, limit: int, cursor: str | None
    ) -> Page[Message]:
        """A task's messages, all or those with one status."""
        ...


class Timelines(Protocol):
    def minutes(self, task_id: int) -> MinuteCounts:
        """The task's counts by minute and final status (``chalicelib/domain/timeline.py``),
        read by key: the cost follows the task's span, never its number of messages."""
        ...


class StopList(Protocol):
    """The stop list (``chalicelib/domain/stoplist.py``)."""

    def add(self, entry: StopEntry) -> None:
        """AlreadyStopped if the phone is on it."""
        ...

    def remove(self, phone: str) -> bool:
        """Take the phone off; False if it was not on the list."""
        ...

    def page(self, *, limit: int, cursor: str | None) -> Page[StopEntry]: ...

    def stopped(self, phones: Sequence[str]) -> set[str]:
        """Which of these phones are on the list, read consistently (the sender's check
        right before its provider calls)."""
        ...


class TestSendNumbers(Protocol):
    """The stage's count of test sends, whose msgIds are made from it
    (``chalicelib/domain/messages.py``)."""

    def take(self, count: int) -> list[int]:
        """``count`` numbers never handed out before (1, 2, 3... over the stage's life)."""
        ...


class AudienceCounts(Protocol):
    """The audience preview: exact counts (``chalicelib/domain/audience.py``) and a sample."""

    def counts(self, keys: Sequence[CountKey]) -> dict[CountKey, int]:
        """The counters' values (a counter never written is absent)."""
        ...

    def sample(
        self,
        parts: Sequence[AudiencePart],
        codes: Sequence[str],
        tags: Sequence[str],
        size: int,
    ) -> list[Client]:
        """Up to ``size`` clients of ``parts`` (a code's part keeping ``tags``, a tag's
        keeping ``codes``), the first found by the fan-out's own index queries within a
        bounded read; fewer when the matches are rare."""
        ...
