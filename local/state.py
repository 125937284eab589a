"""Where the local stack writes at run time: outside the project folder.

``chalice local`` restarts its server whenever any file under the project folder changes
(its stat() watcher walks the whole tree and ignores nothing), so the emulator's log and
the file naming the running emulator live in a per-project folder under
``${XDG_STATE_HOME:-~/.local/state}/notify/`` instead (``NOTIFY_STATE_DIR`` overrides it).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from local.supervisor import ROOT


def state_dir() -> Path:
    override = os.environ.get("NOTIFY_STATE_DIR")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    digest = hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]
    return Path(base).expanduser() / "notify" / f"{ROOT.name}-{digest}"


def emulator_url_file() -> Path:
    """Holds the URL of the emulator a running ``make run``/``make emulator`` started."""
    return state_dir() / "emulator.url"


def data_dir() -> Path:
    """The emulator's journal (``local/journal.py``): the local data kept across restarts."""
    return state_dir() / "data"


def development_key_file() -> Path:
    """The development API key ``make run`` generated, reused by the next run."""
    return state_dir() / "dev-api-key"
