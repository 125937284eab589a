"""Cold start: the import time of the Lambda entry module against boto3 alone, and the
size of the deployment package.

Each import is timed in a fresh interpreter (what a new Lambda container pays), several
times, and the medians are compared. The package is what ``chalice package`` builds.

    .venv/bin/python -m bench.cold_start [--repeat 7] [--no-package]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from infra.trim_package import trim

ROOT = Path(__file__).resolve().parent.parent
_TIMER = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


@dataclass
class ColdStart:
    app_import_s: float
    boto3_import_s: float
    package_bytes: int | None
    package_files: int | None

    @property
    def ratio(self) -> float:
        return self.app_import_s / self.boto3_import_s


def import_time(module: str, repeat: int) -> float:
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "PYTHONDONTWRITEBYTECODE": "1"}
    samples = []
    for _ in range(repeat):
        output = subprocess.run(
            [sys.executable, "-c", _TIMER.format(module=module)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        samples.append(float(output.strip().splitlines()[-1]))
    return statistics.median(samples)


def package_size(stage: str = "dev") -> tuple[int, int]:
    """Bytes and files of the zip ``make package`` deploys: ``chalice package``'s, without
    the AWS SDK the Lambda runtime has (``infra/trim_package.py``)."""
    chalice = Path(sys.executable).parent / "chalice"
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [str(chalice), "package", "--stage", stage, out],
            cwd=ROOT,
            env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"},
            check=True,
            capture_output=True,
        )
        archive = Path(out) / "deployment.zip"
        trim(archive)
        with zipfile.ZipFile(archive) as zipped:
            files = len(zipped.namelist())
        return archive.stat().st_size, files


def run(repeat: int = 7, package: bool = True) -> ColdStart:
    # Warm the file cache first so neither side pays for the first disk read.
    import_time("app", 1)
    import_time("boto3", 1)
    size, files = package_size() if package else (None, None)
    return ColdStart(import_time("app", repeat), import_time("boto3", repeat), size, files)


def report(result: ColdStart) -> list[str]:
    lines = [
        f"import of the Lambda entry module (app.py): {result.app_import_s * 1000:.0f} ms; "
        f"boto3 alone: {result.boto3_import_s * 1000:.0f} ms; ratio {result.ratio:.2f}"
    ]
    if result.package_bytes is not None:
        lines.append(
            f"deployment package: {result.package_bytes / 1e6:.1f} MB zipped, "
            f"{result.package_files} files"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-package", action="store_true")
    args = parser.parse_args()
    print("\n".join(report(run(args.repeat, package=not args.no_package))))


if __name__ == "__main__":
    main()
