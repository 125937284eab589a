"""Run a command that dies with the process that started it (Linux).

    python -m local.die_with_parent PARENT_PID COMMAND [ARG...]

Asks the kernel for SIGTERM when the parent exits, however it exits (``kill -9``
included; ``prctl(PR_SET_PDEATHSIG)``, which survives the ``exec``), then becomes
COMMAND. The supervisor starts its children through this because they run in sessions
of their own, out of reach of a signal sent to its process group. When the parent is
already gone (it died between the fork and here), it exits at once instead.

A wrapper rather than a ``preexec_fn``: the supervisor has threads running by the time
it starts the API server, and Python code between fork and exec is unsafe there.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask for ``sig`` when the parent exits; False where the kernel has no such thing."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return True


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not argv[0].isdigit():
        print(__doc__, file=sys.stderr)
        return 2
    parent, command = int(argv[0]), argv[1:]
    set_parent_death_signal()
    if os.getppid() != parent:
        return 1  # orphaned before the death signal was armed: nobody will stop us
    os.execvp(command[0], command)  # noqa: S606 - the supervisor's own argv


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
