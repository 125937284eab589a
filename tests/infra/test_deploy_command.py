"""``make deploy`` as it would run (``make -n``): the template goes through S3."""

from __future__ import annotations

import shutil
import subprocess

from tests.infra.conftest import ROOT, Packaged

INLINE_TEMPLATE_LIMIT = 51_200  # bytes CloudFormation accepts in the request itself


def test_deploy_sends_the_template_through_the_bucket_with_the_parameters(
    package: Packaged,
) -> None:
    make = shutil.which("make")
    assert make
    settings = ["STAGE=dev", "S3_BUCKET=artifacts", "TRACING=Active", "API_RATE_LIMIT=50"]
    dry = subprocess.run(
        [make, "-n", "--no-print-directory", "deploy", *settings],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (deploy,) = [
        line for line in dry.replace("\\\n", " ").splitlines() if "cloudformation deploy" in line
    ]
    assert "--s3-bucket artifacts" in deploy
    assert deploy.endswith("--parameter-overrides Tracing=Active ApiRateLimit=50")
    # Why it matters: the packaged template is close to the inline limit, or past it.
    assert package.path.stat().st_size > INLINE_TEMPLATE_LIMIT * 0.8
