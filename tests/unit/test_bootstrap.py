"""The composition root binds storage with explicit calls, so ``python -O`` (which drops
``assert`` statements) still points every table at the stage's names."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cached_property
from pathlib import Path

import pytest

from chalicelib.bootstrap import Services

ROOT = Path(__file__).resolve().parents[2]
# Every service and repository reads or writes a table, but the queues and the provider.
NO_STORAGE = {"queue", "fanout_queue", "import_queue", "import_files", "provider"}

# Builds each part in a fresh composition with the models unbound, and prints the table
# each model is bound to afterwards. Nothing here opens a connection.
_SNIPPET = """
import json, sys
from chalicelib.bootstrap import bootstrap
from chalicelib.settings import Settings
from chalicelib.storage import models

settings = Settings.from_env({"STAGE": "opt", "AWS_REGION": "eu-west-1", "LOG_LEVEL": "ERROR"})
bound = {}
for name in sys.argv[1:]:
    for model in models.MODELS + models.VIEWS:
        model.Meta.table_name = ""
    models._bound = None
    getattr(bootstrap(settings), name)
    bound[name] = sorted({model.Meta.table_name for model in models.MODELS + models.VIEWS})
print(json.dumps({"optimize": sys.flags.optimize, "bound": bound}))
"""

ENTITIES = ("clients", "phones", "counters", "api-keys", "tasks", "messages", "stoplist")
TABLES = sorted(f"notify-opt-{name}" for name in ENTITIES)


def _storage_parts() -> list[str]:
    parts = [name for name, value in vars(Services).items() if isinstance(value, cached_property)]
    return [name for name in parts if name not in NO_STORAGE]


def test_every_part_binds_storage_under_python_optimize() -> None:
    parts = _storage_parts()
    assert {"clients", "tasks", "api_keys", "dispatcher", "sender"} <= set(parts)
    output = subprocess.run(
        [sys.executable, "-O", "-c", _SNIPPET, *parts],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = json.loads(output.strip().splitlines()[-1])
    assert result["optimize"] == 1  # asserts really were dropped
    assert result["bound"] == dict.fromkeys(parts, TABLES)


# botocore's bare package is allowed: Powertools' Logger imports it for its user-agent
# hook (0.9 ms, none of its clients or sessions); its submodules are not.
AWS_LIBRARIES = ["boto3", "botocore.session", "botocore.client", "pynamodb"]


@pytest.mark.parametrize(
    ("module", "unwanted"),
    [
        ("app", AWS_LIBRARIES),
        # The authorizer function's handler module: no route, no schema either.
        ("chalicelib.api.auth", [*AWS_LIBRARIES, "pydantic", "chalicelib.schemas", "app"]),
    ],
)
def test_a_function_cold_start_loads_no_aws_library(module: str, unwanted: list[str]) -> None:
    """Every function's cold start imports its handler's module: boto3 and PynamoDB come
    with the first service a handler builds, not with the routes (the edge's type imports
    too); the authorizer's imports only what a key check needs."""
    snippet = f"import sys, {module}; print(sorted(set({unwanted!r}) & set(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", snippet],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"},
    ).stdout
    assert output.strip().splitlines()[-1] == "[]"
