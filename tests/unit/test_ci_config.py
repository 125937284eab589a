"""The GitLab CI job runs the same check as .ci/run on a stock Python 3.11 image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _gitlab_jobs() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())
    assert isinstance(config, dict)
    # Top-level keywords are not jobs; hidden jobs (.name) never run.
    keywords = {"stages", "variables", "default", "include", "workflow", "image", "cache"}
    return {
        name: job
        for name, job in config.items()
        if name not in keywords and not name.startswith(".") and isinstance(job, dict)
    }


def test_the_gitlab_job_runs_make_test_on_python_311() -> None:
    (job,) = _gitlab_jobs().values()
    image = job["image"]
    image = image["name"] if isinstance(image, dict) else image
    assert image == "python:3.11"  # the stock, Debian-based image
    assert job["script"] == ["make test"]
    # `make` is installed before the Makefile runs (apt-get, as root in that image).
    setup = " ".join(job.get("before_script", []))
    assert "apt-get install" in setup
    assert "make" in setup.split("apt-get install", 1)[1].split()


def test_ci_run_is_the_same_make_test() -> None:
    commands = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands[-1] == "make test"
