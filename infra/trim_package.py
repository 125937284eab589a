"""Leave out of the deployment package what the Lambda runtime already has.

The Python runtimes of AWS Lambda ship the AWS SDK for Python (boto3, botocore,
s3transfer and botocore's python-dateutil). ``chalice package`` bundles them anyway,
because PynamoDB and Powertools depend on botocore: 16.8 of the 22.9 MB zipped. Leaving
them out puts the package well under the 8 MB aim of docs/performance.md and halves what
a cold start has to fetch. The functions then import the runtime's SDK, whose version AWS
keeps current (the local stack and the tests run the one pinned in requirements.txt);
``make package BUNDLE_AWS_SDK=1`` keeps the pinned one in the zip instead.

    python -m infra.trim_package build/dev/deployment.zip
"""

from __future__ import annotations

import argparse
import re
import zipfile
from pathlib import Path

# Top-level names in the zip, and their ``*.dist-info`` folders.
RUNTIME_PROVIDED = re.compile(
    r"^(boto3|botocore|s3transfer|dateutil"
    r"|(boto3|botocore|s3transfer|python_dateutil)-[^/]*\.dist-info)(/|$)"
)


def trim(archive: Path) -> tuple[int, int, int]:
    """Rewrite ``archive`` without the runtime's SDK; bytes before, bytes after and the
    number of files left out."""
    before = archive.stat().st_size
    trimmed = archive.with_suffix(".trimmed.zip")
    left_out = 0
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(trimmed, "w") as target:
        for entry in source.infolist():
            if RUNTIME_PROVIDED.match(entry.filename):
                left_out += 1
                continue
            # The same entry (permissions, time, compression), its bytes copied as they are.
            target.writestr(entry, source.read(entry), compress_type=entry.compress_type)
    trimmed.replace(archive)
    return before, archive.stat().st_size, left_out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.trim_package", description=__doc__)
    parser.add_argument("archive", type=Path)
    args = parser.parse_args(argv)
    before, after, left_out = trim(args.archive)
    print(
        f"{args.archive}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB zipped"
        f" ({left_out} files of the AWS SDK left out: the Lambda runtime has it)"
    )


if __name__ == "__main__":
    main()
