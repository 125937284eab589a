"""The import bucket on S3 (the emulator's S3 locally): pre-signed URLs, streamed reads
from a byte offset, the error reports (``ImportFiles`` in ``chalicelib/ports.py``), and
the exports' multipart uploads (``ExportFiles``)."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from chalicelib.domain.exports import Part
from chalicelib.ports import FileReplaced, PartsLost
from chalicelib.settings import Settings

READ_CHUNK_BYTES = 256 * 1024
NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
CHANGED = frozenset({"412", "PreconditionFailed"})
LOST_PARTS = frozenset({"InvalidPart", "InvalidPartOrder", "NoSuchUpload"})


@functools.cache
def _client(region: str, endpoint: str | None) -> Any:
    config = Config(
        connect_timeout=3,
        read_timeout=30,
        retries={"max_attempts": 4, "mode": "standard"},
        # Signature version 4 is the only one pre-signed URLs may use in every region;
        # the emulator (an address, not a domain) takes bucket names in the path. In AWS
        # the URLs name the bucket's regional host (<bucket>.s3.<region>.amazonaws.com):
        # "auto" would sign for the global one, which S3 answers with a redirect for a
        # new bucket outside us-east-1, and neither a browser's CORS preflight nor
        # `curl -T` follows it.
        signature_version="s3v4",
        s3=(
            {"addressing_style": "path"}
            if endpoint
            else {"addressing_style": "virtual", "us_east_1_regional_endpoint": "regional"}
        ),
    )
    return boto3.client("s3", region_name=region, endpoint_url=endpoint, config=config)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class S3ImportFiles:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.bucket = settings.import_bucket

    @property
    def client(self) -> Any:
        return _client(self._settings.aws_region, self._settings.aws_endpoint_url)

    def upload_url(self, key: str, expires_seconds: int) -> str:
        # No content type is signed: `curl -T file URL` sends none and must be accepted.
        return str(
            self.client.generate_presigned_url(
                "put_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=expires_seconds,
            )
        )

    @functools.cached_property
    def upload_origin(self) -> str:
        """The origin (scheme, host, port) every ``upload_url`` points at: the console's
        Content-Security-Policy names it so that the page may PUT a file there. Read from a
        URL signed as the upload ones are (signing is local, no call), so it follows the
        client's endpoint and addressing style: the bucket's S3 host in AWS, the
        emulator's address locally."""
        return _origin(self.upload_url("imports/origin.csv", 60))

    def download_url(self, key: str, expires_seconds: int) -> str:
        return str(
            self.client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": key,
                    "ResponseContentType": "text/csv; charset=utf-8",
                },
                ExpiresIn=expires_seconds,
            )
        )

    def head(self, key: str) -> tuple[str, int] | None:
        # A missing key answers 404 because the import function may list imports/
        # (.chalice/policy-import-files.json); without that grant S3 answers 403, which
        # is a refusal like any other and raises.
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if _code(error) in NOT_FOUND:
                return None
            raise
        return str(head["ETag"]), int(head["ContentLength"])

    def chunks(self, key: str, etag: str, offset: int) -> Iterator[bytes]:
        """A ranged GET from ``offset``, conditional on the ETag the import started with:
        a file replaced meanwhile is never read as the rest of the first one."""
        try:
            answer = self.client.get_object(
                Bucket=self.bucket, Key=key, IfMatch=etag, Range=f"bytes={offset}-"
            )
        except ClientError as error:
            code = _code(error)
            if code in CHANGED or code in NOT_FOUND:
                raise FileReplaced from None
            if code == "InvalidRange":  # the offset is the end of the file
                return iter(())
            raise
        body = answer["Body"]
        return iter(lambda: body.read(READ_CHUNK_BYTES), b"")

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(
            Bucket=self.bucket, Key=key, Body=body, ContentType="text/csv; charset=utf-8"
        )

    def read(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    # --- multipart uploads: exports (ExportFiles), import reports (ImportFiles) -------

    def start_upload(self, key: str) -> str:
        answer = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType="text/csv; charset=utf-8"
        )
        return str(answer["UploadId"])

    def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> str:
        try:
            answer = self.client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
            )
        except ClientError as error:
            if _code(error) in LOST_PARTS:
                raise PartsLost from None
            raise
        return str(answer["ETag"])

    def complete_upload(self, key: str, upload_id: str, parts: Sequence[Part]) -> None:
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": part.number, "ETag": part.etag} for part in parts]
                },
            )
        except ClientError as error:
            if _code(error) in LOST_PARTS:
                raise PartsLost from None
            raise

    def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as error:
            if _code(error) not in LOST_PARTS:
                raise
