"""Bulk import of clients from a CSV file (SPEC, "Bulk import and export"): the rules.

An import's life (``docs/imports.md`` draws it)::

    waiting_upload --(the file's storage event)--> running --(last row)--> done
                                                      └--(bad header, file replaced)--> failed

The file is read as a stream, a chunk of ``CHUNK_ROWS`` records at a time; after each
chunk a checkpoint (:class:`Progress`: byte offset, line, counts, first errors) is stored
conditionally on the previous one, so a chunk is counted once whoever applies it and
however often. Each applied row stamps its client with (import, line, created?, what it
replaced) (:class:`ImportStamp`) in the same transaction as the client: a row applied
before a crash and applied again is recognised by its stamp and counted as it was the
first time, and a phone named twice in one file is recognised too (the later row is
rejected: see :func:`decide`). The audience counters a chunk's rows move are summed from
their stamps (:func:`row_deltas`) and added in the checkpoint's own transaction, so the
rows of different phones share no item and are applied side by side.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from chalicelib.domain.audience import CountKey, deltas
from chalicelib.domain.clients import ClientProfile

COLUMNS = ("phone", "code", "tag", "utc")
# Rows a chunk applies between two checkpoints: the phones of a chunk are looked up with
# one BatchGetItem (100 keys at most).
CHUNK_ROWS = 100
# The audience counters one checkpoint moves: they go in the checkpoint's transaction
# with the import record (DynamoDB takes 100 items in one). A chunk whose rows move more
# is checkpointed after the longest first part whose rows' counters fit (see
# :func:`counted_prefix`); the rest are read again as the next chunk.
CHECKPOINT_COUNTERS = 99
# The errors an import record keeps (the full list is the report in the bucket).
ERRORS_KEPT = 100
# A physical line longer than this is not a client's row: the import fails rather than
# hold it in memory.
MAX_LINE_BYTES = 1 << 20
# The csv module's own limit per field; a client's longest field (a tag) is 2,000.
FIELD_LIMIT = 64 * 1024
UTF8_BOM = b"\xef\xbb\xbf"
# The largest file an import reads (Settings.import_max_bytes, IMPORT_MAX_BYTES): the
# pre-signed PUT cannot bound what is sent to it, so a bigger file is refused when its
# import starts, before a row is read. 100 MiB is about 3 million rows of a short tag
# (35 bytes: "79001234567,900,vip,Europe/Moscow"), 50,000 of the longest (2,000).
MAX_FILE_BYTES = 100 * 1024 * 1024
# An import never uploaded is answered `failed` once its upload URL has expired and
# this much more has passed (a PUT begun just before the expiry, its event on its way).
UPLOAD_GRACE_SECONDS = 15 * 60
# Import records expire (the counters table's TTL on ``expires_at``) this long after
# their last change, as their file and report do in the bucket (infra/template.yaml).
KEEP_DAYS = 7


class ImportStatus(StrEnum):
    WAITING_UPLOAD = "waiting_upload"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


FINAL = frozenset({ImportStatus.DONE, ImportStatus.FAILED})


@dataclass(frozen=True)
class RowError:
    """Why a row was rejected: its line in the file (the header is line 1), the field
    (a column, ``line`` for the row as a whole, ``header`` for the file's first line)."""

    line: int
    field: str
    message: str


@dataclass(frozen=True)
class ImportStamp:
    """What an import wrote on a client: which import, from which line, and whether that
    row created the client (else it updated it).

    An import's row writes leave the audience counters to the chunk's checkpoint, which
    adds the chunk's deltas in its own transaction (:func:`row_deltas`): so the stamp
    keeps what the row replaced (``before``: the code and tag of the client it updated),
    and a chunk applied again after a crash computes the same deltas from its rows'
    stamps. ``deferred`` is False for a stamp written with its counters (an import that
    ran before the counting moved to the checkpoint): nothing is left to count."""

    import_id: int
    line: int
    created: bool
    before: tuple[str, str] | None = None  # (code, tag) the row replaced; None: created
    deferred: bool = True


@dataclass(frozen=True)
class Progress:
    """The checkpoint: everything needed to carry on from the next unread byte."""

    offset: int = 0  # bytes of the file consumed (header included)
    line: int = 0  # physical lines consumed
    rows: int = 0
    created: int = 0
    updated: int = 0
    rejected: int = 0
    errors: tuple[RowError, ...] = ()  # the first ERRORS_KEPT
    columns: tuple[str, ...] = ()  # the header's order; () until it is read
    # The chunks applied, and (a bit each, as hex) those with rejected rows: the report
    # joins the parts of exactly these, so a part left by an attempt whose checkpoint
    # was never written (its chunk applied again without errors) is never read.
    chunks: int = 0
    error_chunks: str = "0"
    # The report's join, once the file is read to its end: the chunks joined into the
    # parts uploaded so far, the multipart upload and its parts' ETags (part n is
    # ``report_parts[n - 1]``), so that a join longer than an invocation carries on.
    ended: bool = False
    joined: int = 0
    upload: str | None = None
    report_parts: tuple[str, ...] = ()

    def after(self, chunk: ChunkResult) -> Progress:
        kept = (self.errors + tuple(chunk.errors))[:ERRORS_KEPT]
        mask = int(self.error_chunks, 16)
        if chunk.errors:
            mask |= 1 << self.chunks
        return replace(
            self,
            offset=chunk.end_offset,
            line=chunk.end_line,
            rows=self.rows + chunk.created + chunk.updated + len(chunk.errors),
            created=self.created + chunk.created,
            updated=self.updated + chunk.updated,
            rejected=self.rejected + len(chunk.errors),
            errors=kept,
            chunks=self.chunks + 1,
            error_chunks=f"{mask:x}",
        )

    def parts_to_join(self) -> Iterator[int]:
        """The chunks with rejected rows not joined yet, in the file's order."""
        mask = int(self.error_chunks, 16) >> self.joined
        chunk = self.joined
        while mask:
            if mask & 1:
                yield chunk
            mask >>= 1
            chunk += 1


@dataclass
class ChunkResult:
    end_offset: int
    end_line: int
    created: int = 0
    updated: int = 0
    errors: list[RowError] = field(default_factory=list)


@dataclass(frozen=True)
class ImportRecord:
    id: int
    status: ImportStatus
    key: str  # the file's object key in the import bucket
    created_at_ms: int
    updated_at_ms: int
    progress: Progress = Progress()
    etag: str | None = None  # the file's, read when the import started
    report_key: str | None = None  # the full error report, once done with rejections
    version: int = 0  # moved by every write; each write is conditional on it


def too_large(size: int, limit: int) -> str | None:
    """Why a file of ``size`` bytes is refused (None if it is not)."""
    if size <= limit:
        return None
    return (
        f"the file is {size:,} bytes, over the limit of {limit:,} bytes: "
        "split it into several imports"
    )


def never_uploaded(record: ImportRecord, now_ms: int, url_seconds: int) -> ImportRecord:
    """The record as it is answered: an import still waiting for its file once its
    upload URL (``url_seconds`` from its creation) has expired, plus the grace, is
    ``failed``, computed on read (no sweep), and its runner fails it the same way if a
    late event still comes."""
    deadline = record.created_at_ms + (url_seconds + UPLOAD_GRACE_SECONDS) * 1000
    if record.status is not ImportStatus.WAITING_UPLOAD or now_ms < deadline:
        return record
    error = RowError(1, "file", "no file was uploaded before the upload URL expired")
    progress = replace(record.progress, errors=(error,))
    return replace(record, status=ImportStatus.FAILED, progress=progress)


def file_key(import_id: int) -> str:
    return f"imports/{import_id}.csv"


def report_key(import_id: int) -> str:
    return f"reports/{import_id}-errors.csv"


def report_part_key(import_id: int, chunk: int) -> str:
    """A chunk's rejected rows, named by the chunk's number (the checkpoint's ``chunks``
    when it is read): a chunk applied again writes the same part."""
    return f"reports/{import_id}/part-{chunk:08d}.csv"


def import_id_of_key(key: str) -> int | None:
    """The import a file key belongs to (None for anything else in the bucket)."""
    name = key.removeprefix("imports/")
    if name == key or not name.endswith(".csv"):
        return None
    digits = name.removesuffix(".csv")
    if not digits.isdigit() or len(digits) > 18:
        return None
    return int(digits)


class FileError(ValueError):
    """The file as a whole cannot be imported (the import fails, nothing is applied
    after it: a header error comes before any row)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def check_header(cells: list[str]) -> tuple[str, ...]:
    """The columns in the file's order; FileError naming what is wrong."""
    names = [cell.strip() for cell in cells]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise FileError(1, f"the header names {', '.join(duplicated)} more than once")
    unknown = [name for name in names if name not in COLUMNS]
    if unknown:
        shown = ", ".join(repr(name) for name in unknown)
        raise FileError(1, f"unknown column {shown}: the columns are phone,code,tag,utc")
    missing = [name for name in COLUMNS if name not in names]
    if missing:
        raise FileError(
            1, f"missing column {', '.join(missing)}: the columns are phone,code,tag,utc"
        )
    return tuple(names)


@dataclass(frozen=True)
class Record:
    """One CSV record: the physical line it starts on, where it ends (bytes and lines,
    for the checkpoint), and its cells, or why it cannot be read."""

    line: int
    end_offset: int
    end_line: int
    cells: list[str] | None
    error: str | None = None


def split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Physical lines (each with its ``\\n``, the last one perhaps without) of a byte
    stream, never holding more than one line."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            yield pending[start : end + 1]
            start = end + 1
        pending = pending[start:]
        if len(pending) > MAX_LINE_BYTES:
            raise FileError(0, f"a line is longer than {MAX_LINE_BYTES} bytes")
    if pending:
        yield pending


def read_records(lines: Iterable[bytes], *, offset: int, line: int) -> Iterator[Record]:
    """The CSV records of ``lines``, which start ``offset`` bytes and ``line`` lines into
    the file. A record may span lines (a quoted field with a line break); the csv module
    asks for exactly the lines one record needs, so the byte count after each record is
    where the next one starts."""
    position = {"offset": offset, "line": line, "bad": 0}

    def text() -> Iterator[str]:
        for raw in lines:
            if position["offset"] == 0 and raw.startswith(UTF8_BOM):
                raw = raw[len(UTF8_BOM) :]  # noqa: PLW2901 - spreadsheets write one
                position["offset"] += len(UTF8_BOM)
            position["offset"] += len(raw)
            position["line"] += 1
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                position["bad"] = position["line"]
                yield raw.decode("utf-8", "replace")

    reader = csv.reader(text())
    while True:
        first = position["line"] + 1
        position["bad"] = 0
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield Record(
                first, position["offset"], position["line"], None, f"not valid CSV: {error}"
            )
            continue
        if position["bad"]:
            yield Record(first, position["offset"], position["line"], None, "not UTF-8")
            continue
        yield Record(first, position["offset"], position["line"], cells)


def row_values(record: Record, columns: tuple[str, ...]) -> dict[str, str] | RowError | None:
    """A record's cells by column; a RowError when it cannot be a row; None for a blank
    line (skipped, not counted)."""
    if record.error is not None or record.cells is None:
        return RowError(record.line, "line", record.error or "unreadable")
    if not record.cells:
        return None
    if len(record.cells) != len(columns):
        return RowError(
            record.line, "line", f"has {len(record.cells)} values, the header has {len(columns)}"
        )
    return dict(zip(columns, record.cells, strict=True))


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    APPLIED = "applied"  # this very row was applied before (a retried chunk)
    DUPLICATE = "duplicate"  # an earlier row of the same file has this phone


@dataclass(frozen=True)
class Decision:
    action: Action
    # APPLIED: whether it created the client; DUPLICATE: the earlier line.
    created: bool = False
    earlier_line: int = 0
    # UPDATE over a later line of this import, written but not counted yet (its first
    # run rejected this row, then died before its checkpoint): this row takes that
    # stamp's place, as if the later line had never been applied.
    replaces: ImportStamp | None = None


def decide(import_id: int, line: int, stamp: ImportStamp | None, *, exists: bool) -> Decision:
    """What to do with a valid row, given the client that holds its phone now (if any)
    and that client's import stamp.

    A phone named twice in one file: the first row applies, the later is rejected,
    naming the first. An operator's file holds one row per client; two rows for one
    phone are a mistake in the file, and silently keeping either would hide it (SQL's
    MERGE refuses the same). A rejected first row does not count: the later row is then
    the first valid one and applies.
    """
    if not exists:
        return Decision(Action.CREATE)
    if stamp is not None and stamp.import_id == import_id:
        if stamp.line == line:
            return Decision(Action.APPLIED, created=stamp.created)
        if stamp.line < line:
            return Decision(Action.DUPLICATE, earlier_line=stamp.line)
        if stamp.deferred:
            return Decision(Action.UPDATE, replaces=stamp)
    return Decision(Action.UPDATE)


def row_deltas(stamp: ImportStamp, profile: ClientProfile) -> dict[CountKey, int]:
    """How an applied row moves the audience counters: from what it replaced (its stamp)
    to ``profile`` (the row). The same on every run of the chunk."""
    if not stamp.deferred:
        return {}
    before = None
    if stamp.before is not None:
        code, tag = stamp.before
        before = ClientProfile(phone=profile.phone, code=code, tag=tag, utc=profile.utc)
    return deltas(before, profile)


def counted_prefix(keys: Sequence[Iterable[CountKey]], limit: int = CHECKPOINT_COUNTERS) -> int:
    """How many of a chunk's records (their counters' keys, in file order) one checkpoint
    can count: all of them if their keys number ``limit`` at most, else the longest first
    part that does (at least one record: a row moves 8 counters at most)."""
    seen: set[CountKey] = set()
    for index, row_keys in enumerate(keys):
        seen.update(row_keys)
        if len(seen) > limit and index > 0:
            return index
    return len(keys)


def duplicate_error(line: int, earlier_line: int) -> RowError:
    return RowError(line, "phone", f"the same phone is on line {earlier_line}; that row applies")


def report_lines(errors: Iterable[RowError]) -> Iterator[str]:
    """The error report's CSV rows (``line,field,message``), without the header."""
    for error in errors:
        yield _csv_row([str(error.line), error.field, error.message])


REPORT_HEADER = "line,field,message\r\n"


def _csv_row(cells: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue()
