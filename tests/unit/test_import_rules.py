"""The bulk import's pure rules (chalicelib/domain/imports.py): reading records with the
byte offsets the checkpoint keeps, the header, and what to do with a row."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chalicelib.domain.audience import EVERYONE, CountKey
from chalicelib.domain.clients import ClientProfile
from chalicelib.domain.imports import (
    CHECKPOINT_COUNTERS,
    UPLOAD_GRACE_SECONDS,
    Action,
    ChunkResult,
    FileError,
    ImportRecord,
    ImportStamp,
    ImportStatus,
    Progress,
    RowError,
    check_header,
    counted_prefix,
    decide,
    import_id_of_key,
    never_uploaded,
    read_records,
    report_part_key,
    row_deltas,
    split_lines,
    too_large,
)

FILE = b'\xef\xbb\xbfphone,code\r\n1,"two\nlines"\n\n3,x\xff\n4,end'


def test_each_record_ends_where_the_next_starts_even_across_lines() -> None:
    records = list(read_records(split_lines([FILE[:7], FILE[7:20], FILE[20:]]), offset=0, line=0))
    assert [(r.line, r.cells, r.error) for r in records] == [
        (1, ["phone", "code"], None),
        (2, ["1", "two\nlines"], None),
        (4, [], None),
        (5, None, "not UTF-8"),
        (6, ["4", "end"], None),
    ]
    assert records[-1].end_offset == len(FILE)
    # Resuming at a record's end reads the same records as reading on.
    cut = records[1]
    again = list(
        read_records(
            split_lines([FILE[cut.end_offset :]]), offset=cut.end_offset, line=cut.end_line
        )
    )
    assert [(r.line, r.cells, r.end_offset) for r in again] == [
        (r.line, r.cells, r.end_offset) for r in records[2:]
    ]


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        (["phone", "code", "tag"], "missing column utc"),
        (["phone", "code", "tag", "utc", "age"], "unknown column 'age'"),
        (["phone", "code", "tag", "utc", "tag"], "names tag more than once"),
    ],
)
def test_header_errors(cells: list[str], message: str) -> None:
    with pytest.raises(FileError, match=message):
        check_header(cells)


def test_header_in_any_order() -> None:
    assert check_header(["utc", " tag", "code", "phone"]) == ("utc", "tag", "code", "phone")


def test_what_a_row_does() -> None:
    assert decide(7, 10, None, exists=False).action is Action.CREATE
    assert decide(7, 10, None, exists=True).action is Action.UPDATE
    assert decide(7, 10, ImportStamp(6, 10, True), exists=True).action is Action.UPDATE
    applied = decide(7, 10, ImportStamp(7, 10, True), exists=True)
    assert (applied.action, applied.created) == (Action.APPLIED, True)
    duplicate = decide(7, 10, ImportStamp(7, 4, False), exists=True)
    assert (duplicate.action, duplicate.earlier_line) == (Action.DUPLICATE, 4)


def test_a_row_over_a_later_uncounted_line_of_the_same_import_takes_its_place() -> None:
    # Line 12 was written (and not counted: its chunk died before its checkpoint) after
    # line 10 failed; line 10 applies now, as if line 12 had never been written.
    later = ImportStamp(7, 12, False, before=("900", "old"))
    decision = decide(7, 10, later, exists=True)
    assert (decision.action, decision.replaces) == (Action.UPDATE, later)
    # A stamp of an earlier version counted its own write: an ordinary update.
    counted = ImportStamp(7, 12, True, deferred=False)
    assert decide(7, 10, counted, exists=True) == decide(7, 10, None, exists=True)


PROFILE = ClientProfile(phone="79001234567", code="905", tag="new", utc="UTC")


def test_a_rows_counter_deltas_come_from_its_stamp() -> None:
    assert row_deltas(ImportStamp(7, 10, True), PROFILE) == {
        CountKey("905", "new"): 1,
        CountKey("905", None): 1,
        CountKey(None, "new"): 1,
        EVERYONE: 1,
    }
    assert row_deltas(ImportStamp(7, 10, False, before=("900", "new")), PROFILE) == {
        CountKey("905", "new"): 1,
        CountKey("905", None): 1,
        CountKey("900", "new"): -1,
        CountKey("900", None): -1,
    }
    assert row_deltas(ImportStamp(7, 10, False, before=("905", "new")), PROFILE) == {}
    # Written by an earlier version with its counters: nothing left to count.
    assert row_deltas(ImportStamp(7, 10, True, deferred=False), PROFILE) == {}


def test_a_checkpoint_counts_the_longest_first_part_whose_counters_fit() -> None:
    def keys(n: int) -> list[CountKey]:
        return [CountKey(f"c{n}", f"t{n}"), CountKey(f"c{n}", None), CountKey(None, f"t{n}")]

    rows = [[*keys(n), EVERYONE] for n in range(50)]
    fitting = (CHECKPOINT_COUNTERS - 1) // 3  # rows whose counters fit with EVERYONE
    assert counted_prefix(rows) == fitting
    assert counted_prefix(rows[:fitting]) == fitting
    assert counted_prefix([[], *rows[:3], []]) == 5  # blank and rejected rows move none
    assert counted_prefix([keys(1)], limit=2) == 1  # at least one record
    assert counted_prefix([]) == 0


def test_keys_of_import_files() -> None:
    assert import_id_of_key("imports/12.csv") == 12
    for key in ("reports/12-errors.csv", "imports/x.csv", "imports/12", "imports/.csv"):
        assert import_id_of_key(key) is None


def test_a_file_over_the_limit_is_refused_with_its_size() -> None:
    assert too_large(100, 100) is None
    reason = too_large(104_857_601, 104_857_600)
    assert reason is not None
    assert "104,857,601 bytes, over the limit of 104,857,600" in reason


def test_an_import_never_uploaded_is_failed_once_its_url_and_the_grace_are_over() -> None:
    waiting = ImportRecord(1, ImportStatus.WAITING_UPLOAD, "imports/1.csv", 0, 0)
    deadline = (3600 + UPLOAD_GRACE_SECONDS) * 1000
    assert never_uploaded(waiting, deadline - 1, 3600) is waiting
    failed = never_uploaded(waiting, deadline, 3600)
    assert failed.status is ImportStatus.FAILED
    assert [(e.line, e.field) for e in failed.progress.errors] == [(1, "file")]
    running = replace(waiting, status=ImportStatus.RUNNING)
    assert never_uploaded(running, deadline * 10, 3600) is running


def test_the_checkpoint_names_exactly_the_chunks_with_rejected_rows() -> None:
    progress = Progress()
    for errors in ([], [RowError(2, "phone", "x")], [], [], [RowError(9, "line", "y")]):
        progress = progress.after(ChunkResult(end_offset=0, end_line=0, errors=list(errors)))
    assert progress.chunks == 5
    assert list(progress.parts_to_join()) == [1, 4]
    assert list(replace(progress, joined=2).parts_to_join()) == [4]
    assert list(replace(progress, joined=5).parts_to_join()) == []
    # A chunk applied again from the same checkpoint, without errors this time, leaves
    # its earlier attempt's part out.
    before = Progress(chunks=3, error_chunks="1")
    assert list(before.after(ChunkResult(0, 0)).parts_to_join()) == [0]
    assert report_part_key(7, 12) == "reports/7/part-00000012.csv"
