"""``make run``'s development key and its start-empty switch (issue 15, part 4)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from chalicelib.services.api_keys import KEY_PREFIX
from local.run import development_key, fresh_requested
from local.state import development_key_file


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_STATE_DIR", str(tmp_path / "state"))


def test_a_generated_key_is_kept_for_its_owner_only_and_reused() -> None:
    key, origin = development_key(None)
    assert key.startswith(KEY_PREFIX)
    assert origin.startswith("new")
    kept = development_key_file()
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert development_key(None) == (key, f"kept in {kept}")


def test_api_key_wins_and_is_not_written() -> None:
    assert development_key("chosen-key") == ("chosen-key", "API_KEY")
    assert not development_key_file().exists()


def test_a_damaged_key_file_gives_a_new_key() -> None:
    development_key_file().parent.mkdir(parents=True)
    development_key_file().write_text("not a key\n")
    key, origin = development_key(None)
    assert key.startswith(KEY_PREFIX) and origin.startswith("new")


@pytest.mark.parametrize(
    ("value", "fresh"),
    [(None, False), ("", False), ("0", False), ("no", False), ("1", True), ("yes", True)],
)
def test_fresh(value: str | None, fresh: bool) -> None:
    assert fresh_requested(value) is fresh
