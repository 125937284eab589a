"""Bulk import of clients (SPEC, "Bulk import and export"; the rules and the checkpoint in
``chalicelib/domain/imports.py``, the life of an import in ``docs/imports.md``).

``create`` answers ``POST /api/imports/`` with a pre-signed upload URL; the bucket tells
the import queue when the file is there, and ``handle_job`` (``app.import_files``) reads
the file from its checkpoint, a chunk at a time, each row validated as
``POST /api/clients/`` validates a body and upserted by phone in its own transaction
(a chunk's phones side by side), the chunk's audience counter deltas added with its
checkpoint, until its time is nearly out: then it queues the import's next job and returns, and the
next invocation carries on from the checkpoint, never from the start.
"""

from __future__ import annotations

import contextvars
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from itertools import islice
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote_plus

from chalicelib import logs
from chalicelib.clock import Clock
from chalicelib.domain.audience import CountKey
from chalicelib.domain.clients import Client, ClientProfile
from chalicelib.domain.exports import PART_BYTES, Part
from chalicelib.domain.imports import (
    CHUNK_ROWS,
    ERRORS_KEPT,
    FINAL,
    MAX_FILE_BYTES,
    REPORT_HEADER,
    Action,
    ChunkResult,
    FileError,
    ImportRecord,
    ImportStamp,
    ImportStatus,
    Progress,
    Record,
    RowError,
    check_header,
    counted_prefix,
    decide,
    duplicate_error,
    file_key,
    import_id_of_key,
    never_uploaded,
    read_records,
    report_key,
    report_lines,
    report_part_key,
    row_deltas,
    row_values,
    split_lines,
    too_large,
)
from chalicelib.domain.lifecycle import ms
from chalicelib.errors import NotFound, ValidationFailed
from chalicelib.ports import (
    FileReplaced,
    ImportClients,
    ImportFiles,
    ImportRepository,
    PartsLost,
    PhoneTaken,
    StaleClient,
    StaleImport,
)
from chalicelib.queue import ImportJob
from chalicelib.schemas import ClientCreate, parse

log = logs.get_logger("imports")

# A row whose client another writer changes between the lookup and the write is looked
# up again this often before it is rejected.
ROW_ATTEMPTS = 3
JOB_VERSION = 1
# A chunk's phones applied at once (each row one transaction of its client and phone:
# the rows of different phones share no item). Measured with bench/imports.py.
IMPORT_THREADS = 8
# New clients written in one transaction (two items each: DynamoDB takes 100).
CREATES_AT_ONCE = 50
ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class ImportJobs(Protocol):
    def send(self, job: ImportJob) -> None: ...


@dataclass(frozen=True)
class NewImport:
    record: ImportRecord
    upload_url: str
    expires_at: datetime


@dataclass(frozen=True)
class ImportView:
    record: ImportRecord
    error_report_url: str | None


def import_ids(body: str, bucket: str) -> list[int]:
    """The imports an import queue message names: S3's "object created" event for files
    of ``bucket`` (its test event and other keys name none), or the import's own job."""
    try:
        data = json.loads(body)
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    if data.get("v") == JOB_VERSION and type(data.get("import")) is int:
        return [data["import"]]
    found: list[int] = []
    for record in data.get("Records") or []:
        try:
            s3 = record["s3"]
            if s3["bucket"]["name"] != bucket or not record["eventName"].startswith(
                "ObjectCreated"
            ):
                continue
            import_id = import_id_of_key(unquote_plus(s3["object"]["key"]))
        except (KeyError, TypeError, AttributeError):
            continue
        if import_id is not None:
            found.append(import_id)
    return found


class ImportService:
    def __init__(
        self,
        clock: Clock,
        *,
        imports: ImportRepository,
        clients: ImportClients,
        files: ImportFiles,
        jobs: ImportJobs,
        bucket: str,
        url_seconds: int,
        max_bytes: int = MAX_FILE_BYTES,
        chunk_rows: int = CHUNK_ROWS,
        part_bytes: int = PART_BYTES,
        monotonic: Callable[[], float] = time.monotonic,
        threads: int = IMPORT_THREADS,
    ) -> None:
        self._clock = clock
        self._imports = imports
        self._clients = clients
        self._files = files
        self._jobs = jobs
        self._bucket = bucket
        self._url_seconds = url_seconds
        self._max_bytes = max_bytes
        self._chunk_rows = chunk_rows
        self._part_bytes = part_bytes
        self._monotonic = monotonic
        self._threads = threads

    def _now_ms(self) -> int:
        return ms(self._clock())

    # --- the API ----------------------------------------------------------------------

    def create(self) -> NewImport:
        import_id = self._imports.new_id()
        now = self._clock()
        record = ImportRecord(
            id=import_id,
            status=ImportStatus.WAITING_UPLOAD,
            key=file_key(import_id),
            created_at_ms=ms(now),
            updated_at_ms=ms(now),
        )
        self._imports.add(record)
        url = self._files.upload_url(record.key, self._url_seconds)
        log.info("import created", extra={"import_id": import_id})
        return NewImport(record, url, now + timedelta(seconds=self._url_seconds))

    def get(self, import_id: int) -> ImportView:
        record = self._imports.get(import_id)
        if record is None:
            raise NotFound(f"Import {import_id} does not exist.")
        record = never_uploaded(record, self._now_ms(), self._url_seconds)
        url = None
        if record.report_key is not None:
            url = self._files.download_url(record.report_key, self._url_seconds)
        return ImportView(record, url)

    # --- the import function ----------------------------------------------------------

    def handle_job(self, body: str, budget_seconds: float) -> None:
        """One message of the import queue."""
        ids = import_ids(body, self._bucket)
        if not ids:
            log.info("import queue message names no import; dropped")
        for import_id in ids:
            self.run(import_id, budget_seconds)

    def run(self, import_id: int, budget_seconds: float) -> ImportRecord | None:
        """Carry the import on from its checkpoint for about ``budget_seconds`` (at least
        one chunk), then queue its next job unless it is over. A runner that finds the
        checkpoint moved by another stops: that one carries on."""
        started = self._monotonic()
        record = self._start(import_id)
        if record is None:
            return None
        records: Iterator[Record] | None = None
        left: list[Record] = []  # read, not checkpointed: the next chunk's first records
        try:
            while not record.progress.ended:
                if records is None:
                    records = self._records(record)
                    if not record.progress.columns:
                        record = replace(record, progress=self._header(records))
                batch = left + list(islice(records, self._chunk_rows - len(left)))
                if not batch:
                    # Kept with the next write (the join's checkpoint, or done).
                    record = replace(record, progress=replace(record.progress, ended=True))
                    break
                record, left = self._checkpoint(record, batch)
                if self._monotonic() - started >= budget_seconds:
                    return self._continue(record)
            return self._join(record, started, budget_seconds)
        except FileError as error:
            line = error.line or record.progress.line + 1
            field = "header" if line == 1 else "file"
            return self._fail(record, RowError(line, field, error.message))
        except FileReplaced:
            message = "the file was replaced or removed while it was imported"
            return self._fail(record, RowError(record.progress.line + 1, "file", message))
        except StaleImport:
            log.info(
                "import moved on by another runner; this one stops",
                extra={"import_id": import_id},
            )
            return None

    def _continue(self, record: ImportRecord) -> ImportRecord:
        self._jobs.send(ImportJob(record.id))
        log.info("import continues in a new invocation", extra=_figures(record))
        return record

    def _start(self, import_id: int) -> ImportRecord | None:
        record = self._imports.get(import_id)
        if record is None:
            log.warning("import event for an unknown import", extra={"import_id": import_id})
            return None
        if record.status in FINAL:
            log.info(
                "import already over; event ignored",
                extra={"import_id": import_id, "status": record.status.value},
            )
            return None
        if record.status is ImportStatus.WAITING_UPLOAD:
            return self._begin(record)
        return record

    def _begin(self, record: ImportRecord) -> ImportRecord | None:
        """A waiting import whose file's event came: running, or failed (its upload URL
        long expired, or the file too large), or still waiting (no file yet)."""
        expired = never_uploaded(record, self._now_ms(), self._url_seconds)
        if expired.status is ImportStatus.FAILED:  # a late event: failed as answered
            self._fail(record, expired.progress.errors[-1])
            return None
        head = self._files.head(record.key)
        if head is None:
            log.info("import has no file yet", extra={"import_id": record.id})
            return None
        etag, size = head
        record = replace(record, etag=etag)
        refused = too_large(size, self._max_bytes)
        if refused is not None:
            # Failed before a row is read; the file stays until the bucket's lifecycle
            # removes it, as any other import's does.
            self._fail(record, RowError(1, "file", refused))
            return None
        try:
            record = self._imports.save(
                replace(record, status=ImportStatus.RUNNING), self._now_ms()
            )
        except StaleImport:
            return self._start(record.id)  # started by another event meanwhile
        log.info("import started", extra={"import_id": record.id, "bytes": size})
        return record

    def _records(self, record: ImportRecord) -> Iterator[Record]:
        if record.etag is None:  # pragma: no cover - set when it starts
            raise FileReplaced
        progress = record.progress
        chunks = self._files.chunks(record.key, record.etag, progress.offset)
        return read_records(split_lines(chunks), offset=progress.offset, line=progress.line)

    def _header(self, records: Iterator[Record]) -> Progress:
        first = next(records, None)
        if first is None:
            raise FileError(1, "the file is empty: the first line must name the columns")
        if first.error == "not UTF-8":
            raise FileError(1, "the header is not UTF-8: save the file as UTF-8 CSV")
        if first.cells is None:
            raise FileError(1, f"the header is {first.error}")
        columns = check_header(first.cells)
        return Progress(offset=first.end_offset, line=first.end_line, columns=columns)

    def _checkpoint(
        self, record: ImportRecord, batch: Sequence[Record]
    ) -> tuple[ImportRecord, list[Record]]:
        """Apply a chunk and store its checkpoint with its counter deltas; the records
        left out of it (their counters did not fit: ``counted_prefix``) come back."""
        chunk, counts, used = self._apply(record.id, record.progress.columns, batch)
        if chunk.errors:
            # Before the checkpoint: a chunk applied again writes the same part again.
            part = "".join(report_lines(chunk.errors))
            self._files.put(report_part_key(record.id, record.progress.chunks), part.encode())
        saved = self._imports.save(
            replace(record, progress=record.progress.after(chunk)), self._now_ms(), counts
        )
        log.info("import chunk applied", extra=_figures(saved))
        return saved, list(batch[used:])

    def _apply(
        self, import_id: int, columns: tuple[str, ...], batch: Sequence[Record]
    ) -> tuple[ChunkResult, dict[CountKey, int], int]:
        """The chunk's rows applied, the rows of one phone in file order and the phones
        side by side (``threads`` at once: the rows share no item now that the counters
        move at the checkpoint); the result, the counter deltas and how many of
        ``batch`` they cover."""
        outcomes, by_phone = _parse(columns, batch)
        found = self._clients.by_phones(list(by_phone)) if by_phone else {}
        new = [phone for phone in by_phone if phone not in found]
        ids = dict(zip(new, self._clients.new_ids(len(new)), strict=True)) if new else {}
        # The new phones' first rows together, a transaction per CREATES_AT_ONCE; a
        # transaction refused (a phone taken meanwhile) leaves its rows to the row path.
        now = self._clock()
        creates = [
            (phone, ImportStamp(import_id, by_phone[phone][0][1], True), ids[phone])
            for phone in new
        ]
        groups = [creates[i : i + CREATES_AT_ONCE] for i in range(0, len(creates), CREATES_AT_ONCE)]

        def create_group(group: list[tuple[str, ImportStamp, int]]) -> list[str]:
            rows = [(by_phone[phone][0][2], stamp, client_id) for phone, stamp, client_id in group]
            return [phone for phone, _, _ in group] if self._clients.create_many(rows, now) else []

        created = {phone for phones in self._each(create_group, groups) for phone in phones}

        def one_phone(phone: str) -> list[tuple[int, _Outcome]]:
            rows = by_phone[phone]
            if phone in created:
                (index, line, profile), *later = rows
                applied = _Applied(True, row_deltas(ImportStamp(import_id, line, True), profile))
                return [(index, applied)] + [(i, duplicate_error(n, line)) for i, n, _ in later]
            return self._apply_phone(import_id, rows, found.get(phone), ids.get(phone))

        for rows in self._each(one_phone, list(by_phone)):
            for index, outcome in rows:
                outcomes[index] = outcome
        return _tally(batch, outcomes)

    def _each(self, work: Callable[[ItemT], ResultT], items: Sequence[ItemT]) -> list[ResultT]:
        """``work`` on each item, ``threads`` at a time, each in a copy of this thread's
        context (its log fields)."""
        if self._threads <= 1 or len(items) <= 1:
            return [work(item) for item in items]
        context = contextvars.copy_context()
        with ThreadPoolExecutor(max_workers=min(self._threads, len(items))) as pool:
            return list(pool.map(lambda item: context.copy().run(work, item), items))

    def _apply_phone(
        self,
        import_id: int,
        rows: Sequence[tuple[int, int, ClientProfile]],
        holder: tuple[Client, ImportStamp | None] | None,
        client_id: int | None,
    ) -> list[tuple[int, _Outcome]]:
        """The rows of one phone, in file order: the first that applies wins, the later
        ones are rejected naming it."""
        outcomes: list[tuple[int, _Outcome]] = []
        first_line: int | None = None
        for index, line, profile in rows:
            if first_line is not None:
                outcomes.append((index, duplicate_error(line, first_line)))
                continue
            outcome = self._upsert(import_id, line, profile, holder, client_id)
            if isinstance(outcome, _Applied):
                first_line = line
            outcomes.append((index, outcome))
        return outcomes

    def _upsert(
        self,
        import_id: int,
        line: int,
        profile: ClientProfile,
        holder: tuple[Client, ImportStamp | None] | None,
        client_id: int | None,
    ) -> _Applied | RowError:
        """Apply one valid row: whether it created its client, and how it moves the
        audience counters (``row_deltas``: the same when the row is met again)."""
        now = self._clock()
        for _ in range(ROW_ATTEMPTS):
            decision = decide(
                import_id, line, holder[1] if holder else None, exists=holder is not None
            )
            try:
                if decision.action is Action.APPLIED:
                    assert holder is not None and holder[1] is not None
                    return _Applied(decision.created, row_deltas(holder[1], profile))
                if decision.action is Action.DUPLICATE:
                    return duplicate_error(line, decision.earlier_line)
                if decision.action is Action.CREATE:
                    stamp = ImportStamp(import_id, line, True)
                    self._clients.create(profile, now, stamp, client_id)
                    return _Applied(True, row_deltas(stamp, profile))
                assert holder is not None
                client = holder[0]
                replaced = decision.replaces
                if replaced is not None:
                    stamp = replace(replaced, line=line)
                else:
                    stamp = ImportStamp(import_id, line, False, before=(client.code, client.tag))
                self._clients.update(client, profile, now, stamp)
                return _Applied(stamp.created, row_deltas(stamp, profile))
            except (PhoneTaken, StaleClient):
                # Written by another meanwhile (another runner of this chunk, the API):
                # look again and decide again.
                holder = self._clients.by_phones([profile.phone]).get(profile.phone)
        return RowError(line, "phone", "the client kept changing while the row was applied")

    def _join(self, record: ImportRecord, started: float, budget_seconds: float) -> ImportRecord:
        """The file is read: join the report from the parts of the chunks with rejected
        rows, in parts of a multipart upload of at least ``part_bytes`` each, each part
        checkpointed, so a report of a million rejected rows (10,000 part reads) carries
        on in the import's next job rather than run out of time; then ``done``."""
        progress = record.progress
        if not progress.rejected:
            return self._done(record, None)
        target = report_key(record.id)
        buffer = bytearray()
        if not progress.report_parts:
            buffer += REPORT_HEADER.encode()
        joined = progress.joined
        try:
            for chunk in progress.parts_to_join():
                buffer += self._files.read(report_part_key(record.id, chunk))
                joined = chunk + 1
                if len(buffer) < self._part_bytes:
                    continue
                record = self._upload_part(record, target, bytes(buffer), joined)
                buffer.clear()
                if self._monotonic() - started >= budget_seconds:
                    return self._continue(record)
            progress = record.progress
            if progress.upload is None:
                self._files.put(target, bytes(buffer))
            else:
                etags = progress.report_parts
                if buffer:
                    number = len(etags) + 1
                    etags += (
                        self._files.upload_part(target, progress.upload, number, bytes(buffer)),
                    )
                parts = [Part(number, etag) for number, etag in enumerate(etags, 1)]
                self._files.complete_upload(target, progress.upload, parts)
        except PartsLost:
            # Aborted (a day old) or completed by a runner that died before writing
            # `done`: the join begins again from the first part.
            log.info("import report upload lost; joined again", extra=_figures(record))
            restart = replace(record.progress, joined=0, upload=None, report_parts=())
            return self._continue(
                self._imports.save(replace(record, progress=restart), self._now_ms())
            )
        return self._done(record, target)

    def _upload_part(
        self, record: ImportRecord, target: str, body: bytes, joined: int
    ) -> ImportRecord:
        progress = record.progress
        upload = progress.upload or self._files.start_upload(target)
        etag = self._files.upload_part(target, upload, len(progress.report_parts) + 1, body)
        joining = replace(
            progress, joined=joined, upload=upload, report_parts=(*progress.report_parts, etag)
        )
        return self._imports.save(replace(record, progress=joining), self._now_ms())

    def _done(self, record: ImportRecord, report: str | None) -> ImportRecord:
        done = self._imports.save(
            replace(record, status=ImportStatus.DONE, report_key=report), self._now_ms()
        )
        log.info("import done", extra=_figures(done))
        return done

    def _fail(self, record: ImportRecord, error: RowError) -> ImportRecord | None:
        kept = record.progress.errors[: ERRORS_KEPT - 1]
        progress = replace(record.progress, errors=(*kept, error))
        try:
            failed = self._imports.save(
                replace(record, status=ImportStatus.FAILED, progress=progress), self._now_ms()
            )
        except StaleImport:
            return None
        log.info(
            "import failed",
            extra={"import_id": record.id, "line": error.line, "reason": error.message},
        )
        return failed


@dataclass(frozen=True)
class _Applied:
    created: bool
    deltas: dict[CountKey, int]


_Outcome = _Applied | RowError


def _parse(
    columns: tuple[str, ...], batch: Sequence[Record]
) -> tuple[list[_Outcome | None], dict[str, list[tuple[int, int, ClientProfile]]]]:
    """Each record validated as ``POST /api/clients/`` validates a body: the rejected
    ones' errors (None: blank or valid) and the valid rows by phone, in file order."""
    outcomes: list[_Outcome | None] = [None] * len(batch)
    by_phone: dict[str, list[tuple[int, int, ClientProfile]]] = {}
    for index, record in enumerate(batch):
        values = row_values(record, columns)
        if values is None:
            continue
        if isinstance(values, RowError):
            outcomes[index] = values
            continue
        try:
            data = parse(ClientCreate, values)
        except ValidationFailed as error:
            field, message = next(iter((error.fields or {"line": error.message}).items()))
            outcomes[index] = RowError(record.line, field, message)
            continue
        profile = ClientProfile(phone=data.phone, code=data.code, tag=data.tag, utc=data.utc)
        by_phone.setdefault(profile.phone, []).append((index, record.line, profile))
    return outcomes, by_phone


def _tally(
    batch: Sequence[Record], outcomes: Sequence[_Outcome | None]
) -> tuple[ChunkResult, dict[CountKey, int], int]:
    """The chunk's result and counter deltas over the records one checkpoint can count
    (``counted_prefix``), and how many those are."""
    used = counted_prefix(
        [outcome.deltas if isinstance(outcome, _Applied) else () for outcome in outcomes]
    )
    last = batch[used - 1]
    result = ChunkResult(end_offset=last.end_offset, end_line=last.end_line)
    counts: Counter[CountKey] = Counter()
    for outcome in outcomes[:used]:
        if isinstance(outcome, RowError):
            result.errors.append(outcome)
        elif isinstance(outcome, _Applied):
            counts.update(outcome.deltas)
            if outcome.created:
                result.created += 1
            else:
                result.updated += 1
    result.errors.sort(key=lambda error: error.line)
    return result, {key: n for key, n in counts.items() if n}, used


def _figures(record: ImportRecord) -> dict[str, Any]:
    progress = record.progress
    return {
        "import_id": record.id,
        "status": record.status.value,
        "line": progress.line,
        "offset": progress.offset,
        "rows": progress.rows,
        "created": progress.created,
        "updated": progress.updated,
        "rejected": progress.rejected,
    }
