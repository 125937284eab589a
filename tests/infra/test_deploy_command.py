"""``make deploy`` as it would run (``make -n``): the template goes through S3."""

from __future__ import annotations

import shutil
import subprocess

from tests.infra.conftest import ROOT, Packaged

INLINE_TEMPLATE_LIMIT = 51_200  # bytes CloudFormation accepts in the request itself


def test_deploy_uploads_the_template_through_the_bucket(package: Packaged) -> None:
    make = shutil.which("make")
    assert make
    dry = subprocess.run(
        [make, "-n", "--no-print-directory", "deploy", "STAGE=dev", "S3_BUCKET=artifacts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (deploy,) = [
        line for line in dry.replace("\\\n", " ").splitlines() if "cloudformation deploy" in line
    ]
    assert "--s3-bucket artifacts" in deploy
    # Why it matters: the packaged template is close to the inline limit, or past it.
    assert package.path.stat().st_size > INLINE_TEMPLATE_LIMIT * 0.8
