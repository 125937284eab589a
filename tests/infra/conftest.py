"""`make package` for each deployable stage, once per test session.

`chalice package` needs no AWS account: it only reads the app and the stage's config
(and fetches Lambda wheels from PyPI once, cached in .chalice/deployments). Fake
credentials and a region make sure nothing could reach a real account anyway.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.stack import REGION, Stack

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("dev", "prod")


@dataclass(frozen=True)
class Packaged:
    stage: str
    path: Path
    template: dict[str, Any]

    @property
    def stack(self) -> Stack:
        return Stack(self.template)


def packaging_environment() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "MAKE", "MFLAGS")) or key == "AWS_CA_BUNDLE"
    }
    env.update(
        AWS_DEFAULT_REGION=REGION,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    return env


@pytest.fixture(scope="session")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Packaged]:
    make = shutil.which("make")
    assert make, "make is needed to run `make package`"
    # Under `pytest -n` (make test) every worker has this session fixture, and two
    # `chalice package` runs at once break the zip cache they share: the first worker
    # packages into the run's shared folder under a lock, the others wait and read it.
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    out = shared / "packaged"
    with (shared / "packaged.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return {stage: _package(make, stage, out / stage) for stage in STAGES}


def _package(make: str, stage: str, target: Path) -> Packaged:
    """``make package`` into ``target``, unless a worker of this run did already."""
    path = target / "sam.yaml"
    if not path.exists():
        run = subprocess.run(
            [make, "--no-print-directory", "package", f"STAGE={stage}", f"OUT={target}"],
            cwd=ROOT,
            env=packaging_environment(),
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert run.returncode == 0, f"make package STAGE={stage} failed:\n{run.stdout}{run.stderr}"
    return Packaged(stage, path, yaml.safe_load(path.read_text()))


@pytest.fixture(params=STAGES)
def package(request: pytest.FixtureRequest, packaged: dict[str, Packaged]) -> Packaged:
    return packaged[request.param]


@pytest.fixture
def stack(package: Packaged) -> Stack:
    return package.stack
