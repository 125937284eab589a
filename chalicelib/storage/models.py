"""PynamoDB models: one table per entity, shaped by how the service reads them.

Access patterns:
- a client by id: ``clients`` hash key;
- clients with an operator code, in id order: ``by_code`` index (hash ``code``);
- clients with a tag, in id order: ``by_tag`` index (hash ``tag_key``, a digest of the
  tag because a tag may be empty or longer than a key may be);
- phone uniqueness: ``phones`` table keyed by phone, written in the same transaction as
  the client, so two clients can never hold one phone;
- new ids: ``counters`` table, one atomic counter per entity;
- API keys by the digest of their value: ``api_keys`` table;
- a task by id: ``tasks``; the due tasks: ``open_by_start``, a sparse index of the
  unfinished tasks sorted by start time;
- a task's message counts by status: ``counters``, a few shard items a task
  (``task#<id>#<shard>``) that the messages table's stream keeps
  (``chalicelib/domain/counting.py``); its sends over time: ``counters`` items
  ``timeline#<task>#<shard>#<hour>``, found through the days each shard item lists
  (``chalicelib/domain/timeline.py``); a task's fan-out segments: ``counters`` items
  ``fanout#<task>#<segment>``;
- a message by (task, client): ``messages``; a task's messages (with a status: the
  same partition, filtered, a bounded number of items a page); its messages the
  dispatcher must look at, by the time it must (waiting for a window or a retry):
  ``parked_by_wake`` (sparse: only messages with a ``wake_ms``). No index by status:
  every status change would write it twice (a key change), and every claim once;
- the deleted tasks whose messages are still to be removed: ``open_by_start``, shard
  ``purge`` (see OpenTasksByStart);
- whether phones are stopped: ``stoplist``, keyed by phone (one BatchGetItem for a
  batch's phones); the whole list, paged: a scan, listing it all being the point;
- bulk imports: ``counters``, an item ``import#<id>`` each, with its checkpoint;
- audience counts (the preview): ``counters``, items ``aud#...`` that every client write
  updates in its transaction (``chalicelib/domain/audience.py``);
- send rate limits: ``counters``, an item ``rate#<scope key>`` a scope (a task's,
  ``all``) holding its next free slot (``chalicelib/domain/ratelimit.py``).

Tasks and messages carry ``expires_at``, the tables' DynamoDB TTL attribute (epoch
seconds): DynamoDB deletes an item once it has passed (``chalicelib/domain/retention.py``).

Clients and tasks carry a ``version``, PynamoDB's optimistic lock (``VersionAttribute``):
every save or update of the model is conditional on the stored version being the one
read (absent, when the value read has none) and moves it on. Items stored before it
existed read as None and count as version 0 until their next change, which sets 1.

Table names, region and endpoint are bound at run time by :func:`configure`.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    NumberAttribute,
    NumberSetAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
    VersionAttribute,
)
from pynamodb.connection import Connection
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib.settings import Settings

PAY_PER_REQUEST = "PAY_PER_REQUEST"


class BaseMeta:
    table_name = ""
    region: str | None = None
    host: str | None = None
    billing_mode = PAY_PER_REQUEST
    connect_timeout_seconds = 2
    read_timeout_seconds = 5
    max_retry_attempts = 3


def tag_key(tag: str) -> str:
    return hashlib.sha256(tag.encode("utf-8")).hexdigest()


class ClientsByCode(GlobalSecondaryIndex["ClientModel"]):  # type: ignore[no-untyped-call]
    class Meta:
        index_name = "by_code"
        projection = AllProjection()

    code = UnicodeAttribute(hash_key=True)
    id = NumberAttribute(range_key=True)


class ClientsByTag(GlobalSecondaryIndex["ClientModel"]):  # type: ignore[no-untyped-call]
    class Meta:
        index_name = "by_tag"
        projection = AllProjection()

    tag_key = UnicodeAttribute(hash_key=True)
    id = NumberAttribute(range_key=True)


class ClientModel(Model):
    class Meta(BaseMeta):
        logical_name = "clients"

    id = NumberAttribute(hash_key=True)
    phone = UnicodeAttribute()
    code = UnicodeAttribute()
    tag = UnicodeAttribute(default="")
    tag_key = UnicodeAttribute()
    utc = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    # Optimistic lock (see the module's doc).
    version = VersionAttribute()
    # The last bulk import row that wrote it (chalicelib/domain/imports.py: ImportStamp),
    # written in the same transaction as the client.
    import_id = NumberAttribute(null=True)
    import_line = NumberAttribute(null=True)
    import_created = BooleanAttribute(null=True)
    # What the row replaced, as JSON: [] for a create, [code, tag] for an update; absent
    # on a write that moved the audience counters itself (ImportStamp.deferred).
    import_before = UnicodeAttribute(null=True)

    by_code = ClientsByCode()
    by_tag = ClientsByTag()


class PhoneModel(Model):
    """Holds each phone in use; its existence is the uniqueness constraint."""

    class Meta(BaseMeta):
        logical_name = "phones"

    phone = UnicodeAttribute(hash_key=True)
    client_id = NumberAttribute()


# A task's counter items (the counts' slots): the stream's shards hash to one each.
COUNTER_SLOTS = 8


def counter_name(task_id: int, slot: int) -> str:
    return f"task#{task_id}#{slot}"


class CounterModel(Model):
    """Atomic counters: id sequences (``value``) and message counts by status.

    A task's message counts are split over a few shard items (``task#<id>#<shard>``)
    so concurrent senders do not all contend for one item; the stats add them up.
    """

    class Meta(BaseMeta):
        logical_name = "counters"

    name = UnicodeAttribute(hash_key=True)
    value = NumberAttribute(default=0)
    total = NumberAttribute(null=True)
    pending = NumberAttribute(null=True)
    sent = NumberAttribute(null=True)
    failed = NumberAttribute(null=True)
    expired = NumberAttribute(null=True)
    cancelled = NumberAttribute(null=True)
    suppressed = NumberAttribute(null=True)
    # The stream's marks: {shard id: last sequence number counted}, as JSON, and their
    # version, which every count write checks and moves (chalicelib/domain/counting.py).
    marks = UnicodeAttribute(null=True)
    marks_version = NumberAttribute(null=True)
    # The UTC days (since the epoch) this slot has timeline hour items in
    # (chalicelib/storage/timeline.py), added in the same write as the marks.
    timeline_days = NumberSetAttribute(null=True)


class TimelineHourModel(Model):
    """A task's timeline counts of one counter slot and UTC hour, an item
    ``timeline#<task>#<slot>#<hour>`` of the counters table. Its minute counts are
    top-level numbers named at run time (``chalicelib/storage/timeline.py``), so they are
    read and written by name, not as declared attributes."""

    class Meta(BaseMeta):
        logical_name = "counters"

    name = UnicodeAttribute(hash_key=True)


class FanoutSegmentModel(Model):
    """One fan-out segment's checkpoint and lease (``chalicelib/domain/fanout.py``), an
    item ``fanout#<task>#<segment>`` of the counters table, the table of small keyed
    state: read by key only, a task's segments together with one BatchGetItem."""

    class Meta(BaseMeta):
        logical_name = "counters"

    name = UnicodeAttribute(hash_key=True)
    cursor = UnicodeAttribute(null=True)
    done = BooleanAttribute(default=False)
    owner = UnicodeAttribute(null=True)
    lease_until_ms = NumberAttribute(default=0)
    updated_ms = NumberAttribute(default=0)


class RateModel(Model):
    """A send rate limit's scope (``chalicelib/domain/ratelimit.py``): its theoretical
    arrival time in µs since the epoch, an item ``rate#<scope key>`` of the counters
    table, moved by one conditional ``UpdateItem`` a reservation."""

    class Meta(BaseMeta):
        logical_name = "counters"

    name = UnicodeAttribute(hash_key=True)
    tat_us = NumberAttribute(null=True)


class OpenTasksByStart(GlobalSecondaryIndex["TaskModel"]):  # type: ignore[no-untyped-call]
    """Sparse index of the tasks not yet finished, by start: the dispatcher's due query.

    Only unfinished tasks carry ``open_shard``, so the index holds them alone and a
    query for ``start_ms <= now`` reads due tasks, never the finished history. A deleted
    task carries ``purge`` there until the dispatcher has removed its messages.
    """

    class Meta:
        index_name = "open_by_start"
        projection = AllProjection()

    open_shard = UnicodeAttribute(hash_key=True)
    start_ms = NumberAttribute(range_key=True)


OPEN_SHARD = "open"
PURGE_SHARD = "purge"


class _TaskItem(Model):
    """The attributes of a task item, shared by the two models of the tasks table."""

    id = NumberAttribute(hash_key=True)
    start_time = UTCDateTimeAttribute()
    end_time = UTCDateTimeAttribute()
    start_ms = NumberAttribute()
    text = UnicodeAttribute()
    filter_codes = ListAttribute(of=UnicodeAttribute, default=list)
    filter_tags = ListAttribute(of=UnicodeAttribute, default=list)
    window_from = UnicodeAttribute(null=True)
    window_to = UnicodeAttribute(null=True)
    rate_limit = NumberAttribute(null=True)  # messages a second; none when absent
    status = UnicodeAttribute()
    # Present while the task is not finished (see OpenTasksByStart).
    open_shard = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    # Deleted tasks stay as tombstones so that in-flight senders see the deletion.
    deleted = BooleanAttribute(default=False)
    # The fan-out's plan (chalicelib/domain/fanout.py): the highest client id when it
    # started and the id ranges per audience part (absent until planned); each segment's
    # checkpoint is a FanoutSegmentModel. Done once every segment is.
    fanout_max_id = NumberAttribute(null=True)
    fanout_ranks = NumberAttribute(null=True)
    fanout_done = BooleanAttribute(default=False)
    first_sent_at = UTCDateTimeAttribute(null=True)
    # Set when the send window or the end of a running task changed: waiting messages
    # must be woken and judged again.
    wake_all = BooleanAttribute(default=False)
    # When a fan-out page of it was last queued, or its fan-out planned (epoch ms).
    fanout_at_ms = NumberAttribute(null=True)
    # TTL: set when the task finishes or is deleted (chalicelib/domain/retention.py).
    expires_at = TTLAttribute(null=True)


class TaskModel(_TaskItem):
    class Meta(BaseMeta):
        logical_name = "tasks"

    # Optimistic lock (see the module's doc): moved by every change of the task itself (the
    # API's edits, a new status), not by the engine's bookkeeping (``TaskProgressModel``).
    version = VersionAttribute()

    open_by_start = OpenTasksByStart()


class TaskProgressModel(_TaskItem):
    """The tasks table without the optimistic lock, for the writes that must not check or
    move the version as PynamoDB does on every update of ``TaskModel``: the engine's
    bookkeeping (the fan-out checkpoint, the first send, the end of a re-judging), which
    an edit of a running task must never collide with, and the tombstone, which moves
    the version whatever it is."""

    class Meta(BaseMeta):
        logical_name = "tasks"

    version = NumberAttribute(null=True)


def live_task_condition() -> Any:
    """A task that has not been deleted (older items may lack the flag)."""
    return TaskModel.deleted.does_not_exist() | (TaskModel.deleted == False)  # noqa: E712


class ParkedMessagesByWake(GlobalSecondaryIndex["MessageModel"]):  # type: ignore[no-untyped-call]
    """Sparse index of the pending messages with a wake time: the dispatcher's way to
    find what waits for it (see ``docs/message-lifecycle.md``)."""

    class Meta:
        index_name = "parked_by_wake"
        projection = AllProjection()

    task_id = NumberAttribute(hash_key=True)
    wake_ms = NumberAttribute(range_key=True)


class MessageModel(Model):
    """One message per (task, client): the key itself forbids a second one."""

    class Meta(BaseMeta):
        logical_name = "messages"
        # The counts follow this stream (chalicelib/services/counting.py).
        stream_view_type = "NEW_AND_OLD_IMAGES"

    task_id = NumberAttribute(hash_key=True)
    client_id = NumberAttribute(range_key=True)
    id = NumberAttribute()
    status = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    sent_at = UTCDateTimeAttribute(null=True)
    attempts = NumberAttribute(default=0)
    last_error = UnicodeAttribute(null=True)
    # Where a pending message stands (chalicelib/domain/lifecycle.py: Phase).
    phase = UnicodeAttribute(null=True)
    # Which job copy is current: moved on by every transition of a pending message,
    # so a duplicate delivery of an older copy is recognised and dropped.
    job_gen = NumberAttribute(default=0)
    # The client's phone and zone when the task started (what the job carries).
    phone = UnicodeAttribute(null=True)
    utc = UnicodeAttribute(null=True)
    # When the dispatcher must look at it unless something moved it first (epoch ms).
    wake_ms = NumberAttribute(null=True)
    # The earliest time of its next attempt: retry backoff or window opening (epoch ms).
    not_before_ms = NumberAttribute(null=True)
    # A sender holds the message for a provider call until then (epoch ms); a copy of
    # the job arriving meanwhile stops, one arriving later (the holder died) carries on.
    claimed_until = NumberAttribute(null=True)
    # TTL: its task's end + a lease + the retention, from the end its last writer knew.
    expires_at = TTLAttribute(null=True)

    parked_by_wake = ParkedMessagesByWake()


class ApiKeyModel(Model):
    """An API key, stored only as the SHA-256 of its value.

    ``key_id`` is the first 32 hex digits of that digest: the authorizer finds the key
    with one GetItem and then compares the whole digest in constant time.
    """

    class Meta(BaseMeta):
        logical_name = "api_keys"

    key_id = UnicodeAttribute(hash_key=True)
    key_hash = UnicodeAttribute()
    name = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    revoked = BooleanAttribute(default=False)
    revoked_at = UTCDateTimeAttribute(null=True)


class StopEntryModel(Model):
    """A phone on the stop list (``chalicelib/domain/stoplist.py``), keyed by the phone:
    the sender's check before each provider call is one BatchGetItem of its phones."""

    class Meta(BaseMeta):
        logical_name = "stoplist"

    phone = UnicodeAttribute(hash_key=True)
    reason = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute()


class ImportModel(Model):
    """A bulk import (``chalicelib/domain/imports.py``): an item ``import#<id>`` of the
    counters table, the table of small keyed state, read and written by key only. Every
    write is conditional on ``version`` (the checkpoint's guard). It expires KEEP_DAYS
    after its last write, as its file and report do."""

    class Meta(BaseMeta):
        logical_name = "counters"

    name = UnicodeAttribute(hash_key=True)
    status = UnicodeAttribute()
    key = UnicodeAttribute()
    created_ms = NumberAttribute()
    updated_ms = NumberAttribute()
    etag = UnicodeAttribute(null=True)
    report_key = UnicodeAttribute(null=True)
    # The checkpoint (chalicelib/domain/imports.py: Progress), as JSON.
    progress = UnicodeAttribute(null=True)
    version = NumberAttribute(default=0)
    # TTL (records written before it existed have none and stay).
    expires_at = TTLAttribute(null=True)


class ExportModel(Model):
    """An export of a task's messages (``chalicelib/domain/exports.py``): an item
    ``export#<id>`` of the counters table, read and written by key only, every write
    conditional on ``version`` (the checkpoint's guard). It expires with its file."""

    class Meta(BaseMeta):
        logical_name = "counters"

    name = UnicodeAttribute(hash_key=True)
    task_id = NumberAttribute()
    status = UnicodeAttribute()
    key = UnicodeAttribute()
    created_ms = NumberAttribute()
    updated_ms = NumberAttribute()
    # The checkpoint (chalicelib/domain/exports.py: Checkpoint), as JSON.
    checkpoint = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    version = NumberAttribute(default=0)
    expires_at = TTLAttribute()


MODELS: tuple[type[Model], ...] = (
    ClientModel,
    PhoneModel,
    CounterModel,
    ApiKeyModel,
    TaskModel,
    MessageModel,
    StopEntryModel,
)
# Other models of the tables above: bound with them, never created.
VIEWS: tuple[type[Model], ...] = (
    TaskProgressModel,
    FanoutSegmentModel,
    RateModel,
    TimelineHourModel,
    ImportModel,
    ExportModel,
)

_TABLE_SETTING: dict[str, str] = {
    "clients": "clients_table",
    "phones": "phones_table",
    "counters": "counters_table",
    "api_keys": "api_keys_table",
    "tasks": "tasks_table",
    "messages": "messages_table",
    "stoplist": "stoplist_table",
}


_transactions: Connection | None = None
_transactions_built = threading.Lock()


def transaction_connection() -> Connection:
    """The one connection transactions use (a botocore client is costly to build). Its
    client is built here, once: an import's threads (chalicelib/services/imports.py)
    would otherwise each build one on their first transaction."""
    global _transactions  # noqa: PLW0603 - one client per container, like each model's
    with _transactions_built:
        if _transactions is None:
            meta = ClientModel.Meta
            connection = Connection(
                region=meta.region,
                host=meta.host,
                connect_timeout_seconds=meta.connect_timeout_seconds,
                read_timeout_seconds=meta.read_timeout_seconds,
                max_retry_attempts=meta.max_retry_attempts,
            )
            connection.client  # noqa: B018 - built now, under the lock
            _transactions = connection
        return _transactions


_bound: Settings | None = None


def configure(settings: Settings) -> None:
    """Point every model at the stage's tables and endpoint (a no-op when already so)."""
    global _transactions, _bound  # noqa: PLW0603
    if settings == _bound:
        return  # keep the cached clients: each costs ~100 ms to build
    _transactions = None
    for model in MODELS + VIEWS:
        meta: Any = model.Meta
        meta.table_name = getattr(settings, _TABLE_SETTING[meta.logical_name])
        meta.region = settings.aws_region
        meta.host = settings.aws_endpoint_url
        model._connection = None
    _bound = settings


def create_tables(wait: bool = True) -> list[str]:
    """Create the tables that do not exist yet, with their TTL (PynamoDB turns it on for a
    model with a ``TTLAttribute``); return the names created. A table kept from before
    the TTL existed gets it too."""
    created = []
    for model in MODELS:
        if not model.exists():
            model.create_table(wait=wait, billing_mode=PAY_PER_REQUEST)
            created.append(model.Meta.table_name)
        elif _has_ttl(model) and not _ttl_enabled(model):
            model.update_ttl(ignore_update_ttl_errors=False)
    return created


def _has_ttl(model: type[Model]) -> bool:
    return any(isinstance(a, TTLAttribute) for a in model.get_attributes().values())


def _ttl_enabled(model: type[Model]) -> bool:
    described = model._get_connection().connection.client.describe_time_to_live(
        TableName=model.Meta.table_name
    )
    return bool(described["TimeToLiveDescription"].get("TimeToLiveStatus") == "ENABLED")
