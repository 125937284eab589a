"""The emulator's port: the one the `local` stage names, so plain `chalice local` finds it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalicelib.http import AuthorizerRejected
from local import run
from local.run import DEFAULT_MOTO_PORT, choose_moto_port, stage_environment
from local.state import state_dir
from local.supervisor import ROOT


@pytest.fixture
def default_port_busy(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = int(sock.getsockname()[1])
        monkeypatch.setattr(run, "DEFAULT_MOTO_PORT", port)
        yield port


def test_the_local_stage_names_the_default_emulator_with_fake_credentials() -> None:
    env = stage_environment("local")
    assert env["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{DEFAULT_MOTO_PORT}"
    assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "local"
    for stage in ("dev", "prod"):
        assert not {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID"} & set(stage_environment(stage))


def test_moto_port_wins(default_port_busy: int) -> None:
    assert choose_moto_port("5123", strict=True) == 5123


def test_make_run_takes_a_free_port_when_the_default_is_busy(default_port_busy: int) -> None:
    port = choose_moto_port(None, strict=False)
    assert port != default_port_busy


def test_make_emulator_refuses_a_busy_default_port(default_port_busy: int) -> None:
    with pytest.raises(SystemExit, match="in use"):
        choose_moto_port(None, strict=True)


def test_run_files_live_outside_what_chalice_local_watches(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("NOTIFY_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert state_dir().parent == tmp_path / "notify"
    assert not state_dir().is_relative_to(ROOT)
    monkeypatch.setenv("NOTIFY_STATE_DIR", str(tmp_path / "elsewhere"))
    assert state_dir() == tmp_path / "elsewhere"


def test_a_refusal_is_api_gateways_unauthorized_and_chalice_locals_401() -> None:
    refusal = AuthorizerRejected()
    assert str(refusal) == "Unauthorized"
    assert refusal.CODE == 401
    assert b'"error": "unauthorized"' in refusal.body


def test_in_lambda_a_refusal_is_a_plain_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lambda's package holds chalice.app only: chalice.local is not importable there."""
    from chalicelib import http  # noqa: PLC0415

    monkeypatch.setitem(__import__("sys").modules, "chalice.local", None)
    assert http._refusal_base() is Exception
