"""Where the pre-signed URLs of the import bucket point (``chalicelib/bucket.py``): the
console PUTs a file there from the browser, and its Content-Security-Policy names that
origin (``S3ImportFiles.upload_origin``). Signing is local: nothing here is sent."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from chalicelib.bucket import S3ImportFiles
from chalicelib.settings import Settings


def files(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> S3ImportFiles:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return S3ImportFiles(Settings.from_env({"STAGE": "dev", "LOG_LEVEL": "ERROR", **env}))


@pytest.mark.parametrize("region", ["eu-west-1", "us-east-1"])
def test_in_aws_the_urls_name_the_buckets_regional_host(
    monkeypatch: pytest.MonkeyPatch, region: str
) -> None:
    """Not the global ``<bucket>.s3.amazonaws.com``: outside us-east-1, S3 answers a new
    bucket's global name with a redirect for up to a day, which a browser's CORS
    preflight (and ``curl -T``) does not follow."""
    bucket = files(monkeypatch, {"AWS_REGION": region, "IMPORT_BUCKET": "notify-dev-imports-1"})
    host = f"notify-dev-imports-1.s3.{region}.amazonaws.com"
    assert urlsplit(bucket.upload_url("imports/7.csv", 60)).netloc == host
    assert urlsplit(bucket.download_url("reports/7.csv", 60)).netloc == host
    assert bucket.upload_origin == f"https://{host}"


def test_against_the_emulator_the_urls_name_its_address(monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = files(
        monkeypatch,
        {"AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:4811"},
    )
    url = bucket.upload_url("imports/7.csv", 60)
    assert url.startswith("http://127.0.0.1:4811/notify-dev-imports/imports/7.csv?")
    assert bucket.upload_origin == "http://127.0.0.1:4811"
