"""The product's contract lives in the repository: nothing points outside it for it."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Spelled in two pieces so that this file does not match itself.
OUTSIDE_DOCS = ("shared" + "/docs").encode()


def _tracked_files() -> list[Path]:
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return [ROOT / name for name in listing.decode().split("\0") if name]


def test_the_spec_and_the_style_guide_are_in_docs() -> None:
    for name in ("SPEC.md", "STYLE.md", "seed-ru.md"):
        assert (ROOT / "docs" / name).is_file(), name


def test_no_tracked_file_cites_docs_outside_the_repository() -> None:
    files = _tracked_files()
    assert ROOT / "app.py" in files  # the listing is the real one
    citing = [
        str(path.relative_to(ROOT))
        for path in files
        if path.is_file() and OUTSIDE_DOCS in path.read_bytes()
    ]
    assert citing == []
