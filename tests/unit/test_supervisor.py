"""The local supervisor's guards: taken ports are named, children die with their parent."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from local.die_with_parent import main as die_with_parent
from local.supervisor import PortInUse, check_ports, free_port, port_in_use
from tests.conftest import ROOT


def test_a_listening_port_is_in_use_and_named() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        free = free_port()
        assert port_in_use(port)
        assert not port_in_use(free)
        with pytest.raises(PortInUse, match=f"port {port} \\(the API, PORT\\)"):
            check_ports({free: "the emulator", port: "the API, PORT"})
    check_ports({port: "the API, PORT", 0: "any free port"})


def wrapper(parent: int, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "local.die_with_parent", str(parent), *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_wrapper_refuses_to_run_for_a_parent_that_is_gone() -> None:
    gone = wrapper(os.getpid() + 1_000_000, sys.executable, "-c", "print('ran')")
    assert (gone.returncode, gone.stdout) == (1, "")
    assert die_with_parent(["not-a-pid"]) == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_the_wrapper_runs_the_command_with_a_parent_death_signal() -> None:
    # The command reads its own parent-death signal from the kernel (PR_GET_PDEATHSIG).
    read = (
        "import ctypes, signal; sig = ctypes.c_int(); "
        "ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0); "
        "print(sig.value == signal.SIGTERM)"
    )
    result = wrapper(os.getpid(), sys.executable, "-c", read)
    assert (result.returncode, result.stdout.strip()) == (0, "True"), result.stderr
