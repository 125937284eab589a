"""The deployment package: small, without the SDK the Lambda runtime has, and complete
with that SDK (issue 17: at most 8 MB zipped)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.infra.conftest import Packaged

MAX_BYTES = 8_000_000
EM_AARCH64 = 183  # ELF e_machine of arm64
SITE = Path(next(p for p in sys.path if p.endswith("site-packages")))
# What the Lambda Python runtime provides (infra/trim_package.py), and what it needs.
RUNTIME_SDK = ("boto3", "botocore", "s3transfer", "dateutil", "jmespath", "six.py")


def archive(package: Packaged) -> Path:
    return package.path.parent / "deployment.zip"


def test_the_package_is_small_and_leaves_out_the_runtimes_sdk(package: Packaged) -> None:
    zipped = archive(package)
    assert zipped.stat().st_size <= MAX_BYTES, f"{zipped.stat().st_size / 1e6:.1f} MB"
    tops = {name.split("/")[0] for name in zipfile.ZipFile(zipped).namelist()}
    assert not tops & {"boto3", "botocore", "s3transfer", "dateutil"}
    assert {"app.py", "chalicelib", "pynamodb", "pydantic_core", "aws_lambda_powertools"} <= tops


def compiled_packages(zipped: Path) -> set[str]:
    """Top-level packages of the zip with compiled extensions (built for Lambda's CPU)."""
    names = zipfile.ZipFile(zipped).namelist()
    return {name.split("/")[0] for name in names if name.endswith(".so")}


def test_compiled_extensions_are_built_for_the_functions_architecture(package: Packaged) -> None:
    functions = package.stack.of_type("AWS::Serverless::Function")
    (architecture,) = {tuple(f["Properties"]["Architectures"]) for f in functions.values()}
    assert architecture == ("arm64",), "Graviton: 20% cheaper a GB-second (issue 17)"
    with zipfile.ZipFile(archive(package)) as zipped:
        libraries = [name for name in zipped.namelist() if name.endswith(".so")]
        assert libraries
        for name in libraries:
            header = zipped.read(name)[:20]
            assert header[:4] == b"\x7fELF"
            assert int.from_bytes(header[18:20], "little") == EM_AARCH64, name


def test_the_package_with_the_runtimes_sdk_imports_every_handler(
    package: Packaged, tmp_path: Path
) -> None:
    """The zip and the SDK alone on the path (``python -S``: no site-packages), as in
    Lambda: the app loads, its services are built and the modules of each handler import.
    Its compiled packages are for Lambda's arm64: this machine's builds of the same pinned
    versions stand in for them."""
    code = tmp_path / "task"
    zipfile.ZipFile(archive(package)).extractall(code)
    sdk = tmp_path / "runtime"
    sdk.mkdir()
    for name in (*RUNTIME_SDK, *compiled_packages(archive(package))):
        (sdk / name).symlink_to(SITE / name)
    snippet = (
        "import sys; sys.path[:0] = [sys.argv[2], sys.argv[1]];"
        " import app; wired = app.services();"
        " import chalicelib.services.sending, chalicelib.services.dispatch;"
        " print(type(wired.sender).__name__, type(wired.dispatcher).__name__)"
    )
    run = subprocess.run(
        [sys.executable, "-S", "-c", snippet, str(code), str(sdk)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["Sender", "Dispatcher"], run.stdout
